# src/sendmail: build rules for this folder are added here.
