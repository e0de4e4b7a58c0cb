/*
 * ctl_user.h - `ternctl user add NAME`: AUTH users in [auth] users_file.
 */
#ifndef TERN_CTL_USER_H
#define TERN_CTL_USER_H

/* user add NAME: reads the password from stdin; 0 ok, 1 failed, 2 usage. */
int ctl_user(const char *config_path, int argc, char **argv);

#endif
