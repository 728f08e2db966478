/*
 * Client tokens: HS256 JWTs. The gateway verifies them at auth and at
 * refresh with our own code (base64url, HMAC-SHA256 over "header.payload",
 * a constant-time compare, then the claims), so what is accepted does not
 * depend on a library's patch level; the load generator and tests sign
 * them (libjwt). The claims are returned as JSON text so callers read them
 * with jansson and no library type leaks out of this file.
 */
#ifndef PL_TOKEN_H
#define PL_TOKEN_H

#include <stddef.h>
#include <stdint.h>

/* nbf may be this many seconds in the future: the issuer usually sets
 * nbf = iat = its own now, and a gateway whose clock is a little behind
 * must not refuse a token that was just issued. exp has no leeway. */
#define PL_TOKEN_NBF_LEEWAY 30

typedef enum {
    PL_TOKEN_OK,
    PL_TOKEN_MALFORMED, /* not three base64url parts, bad JSON, bad claim types */
    PL_TOKEN_BAD_ALG,   /* header alg anything but "HS256" (none, HS512, RS256...) */
    PL_TOKEN_BAD_SIG,   /* signature does not verify with the secret */
    PL_TOKEN_NO_EXP,    /* exp missing or not an integer */
    PL_TOKEN_EXPIRED,   /* exp <= now */
    PL_TOKEN_BAD_SUB,   /* sub missing or not 1-64 of [A-Za-z0-9_.-] */
    PL_TOKEN_NOT_YET,   /* nbf > now + PL_TOKEN_NBF_LEEWAY */
    PL_TOKEN_BAD_ISS,   /* issuer configured and iss missing or different */
    PL_TOKEN_BAD_AUD,   /* audience configured and aud missing or not naming it */
} pl_token_status_t;

/* What a token must satisfy. Borrowed pointers, owned by the caller. */
typedef struct pl_token_rules {
    const uint8_t *secret; /* HS256 key; NULL or empty: every token is PL_TOKEN_BAD_SIG */
    size_t secret_len;
    const char *issuer;   /* NULL or "": iss not checked; else iss must equal it */
    const char *audience; /* NULL or "": aud not checked; else aud (a string, or an
                           * array of strings) must contain it */
} pl_token_rules_t;

/* Verifies token under rules at time now (unix seconds): alg HS256, the
 * signature, then exp (required, now < exp), nbf (optional, with the
 * leeway above), iss/aud when configured, sub, and the types of name and
 * rooms. On PL_TOKEN_OK, *claims_json (if not NULL) receives the claims as
 * a malloc'd JSON object text the caller frees; otherwise it is NULL. */
pl_token_status_t pl_token_verify(const char *token, const pl_token_rules_t *rules, int64_t now,
                                  char **claims_json);

/* Signs claims_json (a JSON object) with HS256; returns a malloc'd token
 * or NULL if the claims are not a JSON object. */
char *pl_token_sign(const char *claims_json, const uint8_t *secret, size_t secret_len);

/* A short lowercase reason for logs. */
const char *pl_token_status_str(pl_token_status_t st);

/* 1 if s is a valid user id: 1-64 of [A-Za-z0-9_.-]. */
int pl_token_valid_user(const char *s, size_t len);

#endif
