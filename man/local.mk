# man: manual pages, one per line.
dist_man_MANS += man/ternd.8
dist_man_MANS += man/tern.conf.5
dist_man_MANS += man/ternctl.8
dist_man_MANS += man/tern-signer.8
dist_man_MANS += man/tern-cleanup.8
dist_man_MANS += man/tern-smtpd.8
dist_man_MANS += man/tern-smtp.8
dist_man_MANS += man/tern-qmgr.8
dist_man_MANS += man/sendmail.1
dist_man_MANS += man/tern-pickup.8
dist_man_MANS += man/tern-bounce.8
