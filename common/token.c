/*
 * HS256 token verification and signing on top of libjwt 1.10. libjwt 1.10
 * decodes alg "none" tokens even when given a key and does not check exp,
 * so both are checked here explicitly rather than trusted to the library.
 */
#include "token.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <jwt.h>
#include <stdlib.h>
#include <string.h>

static const char *const status_names[] = {
    "ok",          "malformed token", "algorithm not HS256", "bad signature",
    "exp missing", "token expired",   "bad sub claim",
};

const char *pl_token_status_str(pl_token_status_t st)
{
    return (unsigned)st < PL_ARRAY_LEN(status_names) ? status_names[st] : "?";
}

int pl_token_valid_user(const char *s, size_t len)
{
    if (len < 1 || len > 64)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.' || ch == '-'))
            return 0;
    }
    return 1;
}

/* Reads the alg from the header ourselves so that "none" and unknown
 * algorithms are refused before libjwt gets to interpret them. */
static pl_token_status_t header_alg(const char *token)
{
    const char *dot = strchr(token, '.');
    if (dot == NULL || dot == token || strchr(dot + 1, '.') == NULL)
        return PL_TOKEN_MALFORMED;
    size_t n = (size_t)(dot - token);
    if (n > 4096)
        return PL_TOKEN_MALFORMED;
    /* base64url decode into buf */
    unsigned char buf[3100];
    size_t out = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = token[i];
        int v;
        if (ch >= 'A' && ch <= 'Z')
            v = ch - 'A';
        else if (ch >= 'a' && ch <= 'z')
            v = ch - 'a' + 26;
        else if (ch >= '0' && ch <= '9')
            v = ch - '0' + 52;
        else if (ch == '-' || ch == '+')
            v = 62;
        else if (ch == '_' || ch == '/')
            v = 63;
        else if (ch == '=')
            break;
        else
            return PL_TOKEN_MALFORMED;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[out++] = (unsigned char)(acc >> bits);
        }
    }
    json_error_t jerr;
    json_t *h = json_loadb((const char *)buf, out, 0, &jerr);
    if (h == NULL || !json_is_object(h)) {
        json_decref(h);
        return PL_TOKEN_MALFORMED;
    }
    const char *alg = json_string_value(json_object_get(h, "alg"));
    pl_token_status_t st = (alg && strcmp(alg, "HS256") == 0) ? PL_TOKEN_OK : PL_TOKEN_BAD_ALG;
    json_decref(h);
    return st;
}

pl_token_status_t pl_token_verify(const char *token, const uint8_t *secret, size_t secret_len,
                                  int64_t now, char **claims_json)
{
    if (claims_json)
        *claims_json = NULL;
    if (token == NULL || *token == '\0' || secret_len == 0)
        return token == NULL || *token == '\0' ? PL_TOKEN_MALFORMED : PL_TOKEN_BAD_SIG;
    pl_token_status_t st = header_alg(token);
    if (st != PL_TOKEN_OK)
        return st;

    jwt_t *jwt = NULL;
    int rc = jwt_decode(&jwt, token, secret, (int)secret_len);
    if (rc != 0 || jwt == NULL) {
        /* libjwt says EINVAL for both a bad signature and a bad encoding;
         * the header parsed, so a failure here is the signature or body. */
        if (jwt)
            jwt_free(jwt);
        return rc == EINVAL ? PL_TOKEN_BAD_SIG : PL_TOKEN_MALFORMED;
    }
    if (jwt_get_alg(jwt) != JWT_ALG_HS256) {
        jwt_free(jwt);
        return PL_TOKEN_BAD_ALG;
    }
    char *grants = jwt_get_grants_json(jwt, NULL);
    jwt_free(jwt);
    if (grants == NULL)
        return PL_TOKEN_MALFORMED;

    json_error_t jerr;
    json_t *c = json_loads(grants, 0, &jerr);
    st = PL_TOKEN_OK;
    if (c == NULL || !json_is_object(c)) {
        st = PL_TOKEN_MALFORMED;
        goto out;
    }
    json_t *exp = json_object_get(c, "exp");
    if (!json_is_integer(exp)) {
        st = PL_TOKEN_NO_EXP;
        goto out;
    }
    if (json_integer_value(exp) <= now) {
        st = PL_TOKEN_EXPIRED;
        goto out;
    }
    json_t *sub = json_object_get(c, "sub");
    if (!json_is_string(sub) ||
        !pl_token_valid_user(json_string_value(sub), json_string_length(sub))) {
        st = PL_TOKEN_BAD_SUB;
        goto out;
    }
    json_t *name = json_object_get(c, "name");
    if (name != NULL && !json_is_string(name)) {
        st = PL_TOKEN_MALFORMED;
        goto out;
    }
    json_t *rooms = json_object_get(c, "rooms");
    if (rooms != NULL) {
        size_t i;
        json_t *r;
        if (!json_is_array(rooms)) {
            st = PL_TOKEN_MALFORMED;
            goto out;
        }
        json_array_foreach(rooms, i, r) if (!json_is_string(r))
        {
            st = PL_TOKEN_MALFORMED;
            goto out;
        }
    }
    if (claims_json)
        *claims_json = json_dumps(c, JSON_COMPACT);
out:
    json_decref(c);
    free(grants);
    return st;
}

char *pl_token_sign(const char *claims_json, const uint8_t *secret, size_t secret_len)
{
    jwt_t *jwt = NULL;
    char *out = NULL;
    if (jwt_new(&jwt) != 0)
        return NULL;
    if (jwt_add_grants_json(jwt, claims_json) == 0 &&
        jwt_set_alg(jwt, JWT_ALG_HS256, secret, (int)secret_len) == 0)
        out = jwt_encode_str(jwt);
    jwt_free(jwt);
    return out;
}
