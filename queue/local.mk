# queue: libternq, the LMDB queue store (see queue/SCHEMA.md).
