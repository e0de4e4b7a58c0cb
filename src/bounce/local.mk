# src/bounce: build rules for this folder are added here.
