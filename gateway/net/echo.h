/*
 * The echo endpoint (config echo_path): every text or binary message comes
 * back as one message of the same type. For tests and load generators;
 * no state and no worker hooks.
 */
#ifndef PL_ECHO_H
#define PL_ECHO_H

/* Registers the echo module for path (see pl_ops_register); "" = off
 * (nothing registered). Returns 0 or -1. */
int pl_echo_register(const char *path);

#endif
