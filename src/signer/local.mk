# src/signer: tern-signer, the only process that reads DKIM private keys.
pkglibexec_PROGRAMS += src/signer/tern-signer
src_signer_tern_signer_SOURCES = src/signer/signer.c \
	src/signer/header_split.c src/signer/header_split.h \
	src/signer/key_cache.c src/signer/key_cache.h
src_signer_tern_signer_CPPFLAGS = $(AM_CPPFLAGS) $(OPENDKIM_CFLAGS)
src_signer_tern_signer_LDADD = $(TERN_LIBS) $(OPENDKIM_LIBS) $(PTHREAD_LIBS)
