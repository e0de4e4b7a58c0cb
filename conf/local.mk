# conf: the commented example configuration.
EXTRA_DIST += conf/tern.conf
EXTRA_DIST += conf/bounce-classes
