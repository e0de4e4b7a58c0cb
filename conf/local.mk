# conf: the commented example configuration.
EXTRA_DIST += conf/tern.conf
