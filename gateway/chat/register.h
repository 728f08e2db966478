/*
 * The chat layer as the gateway's main sees it: one call that registers
 * the chat protocol with the transport (ops.h) for its path, /ws. The rest
 * of the layer is reached only through those hooks.
 */
#ifndef PL_CHAT_REGISTER_H
#define PL_CHAT_REGISTER_H

/* Registers the chat module for /ws (pl_ops_register). Called by the
 * master's setup (main.c) before workers fork. Returns 0 or -1. */
int pl_chat_register(void);

#endif
