# src/lib: libtern, the small library shared by every daemon.
noinst_LIBRARIES += src/lib/libtern.a
src_lib_libtern_a_SOURCES = \
	src/lib/address.c src/lib/address.h \
	src/lib/config.c src/lib/config.h \
	src/lib/daemon.c src/lib/daemon.h \
	src/lib/dkim_key.c src/lib/dkim_key.h \
	src/lib/ipc.c src/lib/ipc_client.c src/lib/ipc.h \
	src/lib/log.c src/lib/log.h \
	src/lib/signer_client.c src/lib/signer_client.h \
	src/lib/smtp_reply.c src/lib/smtp_reply.h \
	src/lib/peercred.c src/lib/peercred.h \
	src/lib/peer_proof.c src/lib/peer_proof.h \
	src/lib/user_lookup.c src/lib/user_lookup.h \
	src/lib/resolver.c src/lib/resolver.h \
	src/lib/sandbox.c src/lib/sandbox.h \
	src/lib/util.c src/lib/util.h

# What a program linking libtern needs.
TERN_LIBS = src/lib/libtern.a $(LIBEVENT_LIBS) $(OPENSSL_LIBS) $(INIH_LIBS) $(PTHREAD_LIBS)
