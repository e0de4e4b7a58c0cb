# man: manual pages.
dist_man_MANS += man/ternd.8 man/tern.conf.5 man/ternctl.8
