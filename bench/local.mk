# bench: build rules for this folder are added here.
