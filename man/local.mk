# man: manual pages, one per line.
dist_man_MANS += man/ternd.8
dist_man_MANS += man/tern.conf.5
dist_man_MANS += man/ternctl.8
dist_man_MANS += man/sendmail.1
dist_man_MANS += man/tern-pickup.8
