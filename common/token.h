/*
 * Client tokens: HS256 JWTs (libjwt). The gateway verifies them at auth;
 * the load generator and tests sign them. Only HS256 is accepted; the
 * claims are returned as JSON text so callers check them with jansson and
 * no libjwt type leaks out of this file.
 */
#ifndef PL_TOKEN_H
#define PL_TOKEN_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    PL_TOKEN_OK,
    PL_TOKEN_MALFORMED, /* not three base64url parts, bad JSON, bad claim types */
    PL_TOKEN_BAD_ALG,   /* anything but HS256 (alg none included) */
    PL_TOKEN_BAD_SIG,   /* signature does not verify with the secret */
    PL_TOKEN_NO_EXP,    /* exp missing or not an integer */
    PL_TOKEN_EXPIRED,   /* exp <= now */
    PL_TOKEN_BAD_SUB,   /* sub missing or not 1-64 of [A-Za-z0-9_.-] */
} pl_token_status_t;

/* Verifies token with secret at time now (unix seconds). On PL_TOKEN_OK,
 * *claims_json (if not NULL) receives the claims as a malloc'd JSON object
 * text the caller frees. */
pl_token_status_t pl_token_verify(const char *token, const uint8_t *secret, size_t secret_len,
                                  int64_t now, char **claims_json);

/* Signs claims_json (a JSON object) with HS256; returns a malloc'd token
 * or NULL if the claims are not a JSON object. */
char *pl_token_sign(const char *claims_json, const uint8_t *secret, size_t secret_len);

/* A short lowercase reason for logs. */
const char *pl_token_status_str(pl_token_status_t st);

/* 1 if s is a valid user id: 1-64 of [A-Za-z0-9_.-]. */
int pl_token_valid_user(const char *s, size_t len);

#endif
