/*
 * HS256 token verification (our own: base64url, HMAC-SHA256 from OpenSSL,
 * CRYPTO_memcmp, claims with jansson) and signing (libjwt). Verification
 * used to be libjwt's jwt_decode; libjwt 1.10 decodes alg "none" tokens
 * even when given a key, checks neither exp nor nbf, and whether it
 * compares signatures in constant time depends on its version, so none of
 * that is left to it any more. Signing stays on libjwt: it is only used by
 * tests and tools, and a second implementation cross-checks ours.
 */
#include "token.h"
#include "util.h"

#include <jansson.h>
#include <jwt.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#define SHA256_LEN 32

static const char *const status_names[] = {
    "ok",          "malformed token",     "algorithm not HS256", "bad signature",
    "exp missing", "token expired",       "bad sub claim",       "token not yet valid (nbf)",
    "bad issuer",  "audience not allowed"};

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

static int b64url_value(char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '-')
        return 62;
    if (ch == '_')
        return 63;
    return -1;
}

/* Decodes n base64url characters (RFC 7515: url alphabet, no padding) into
 * a malloc'd buffer of *out_len bytes. NULL when a character is outside
 * that alphabet, n % 4 == 1, or the unused low bits of the last character
 * are not zero: each byte string then has exactly one accepted encoding,
 * so a signature cannot be varied without changing its bytes. */
static unsigned char *b64url_decode(const char *s, size_t n, size_t *out_len)
{
    if (n % 4 == 1)
        return NULL;
    unsigned char *out = pl_xmalloc(n * 3 / 4 + 1);
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_value(s[i]);
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
        free(out);
        return NULL;
    }
    *out_len = o;
    return out;
}

/* Decodes one part as a JSON object (duplicate keys and \u0000 refused:
 * two "sub"s must not mean one thing to us and another to the issuer). */
static json_t *decode_json_part(const char *s, size_t n)
{
    size_t len = 0;
    unsigned char *raw = b64url_decode(s, n, &len);
    if (raw == NULL)
        return NULL;
    json_error_t jerr;
    json_t *o = json_loadb((const char *)raw, len, JSON_REJECT_DUPLICATES, &jerr);
    free(raw);
    if (o != NULL && !json_is_object(o)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* The header must name HS256 and nothing we would have to understand
 * ("crit", RFC 7515 4.1.11). */
static pl_token_status_t check_header(const char *s, size_t n)
{
    json_t *h = decode_json_part(s, n);
    if (h == NULL)
        return PL_TOKEN_MALFORMED;
    json_t *alg = json_object_get(h, "alg");
    pl_token_status_t st = PL_TOKEN_OK;
    if (!json_is_string(alg) || strcmp(json_string_value(alg), "HS256") != 0)
        st = PL_TOKEN_BAD_ALG;
    else if (json_object_get(h, "crit") != NULL)
        st = PL_TOKEN_MALFORMED;
    json_decref(h);
    return st;
}

/* HMAC-SHA256 of signed_part with the secret against the decoded
 * signature, compared in constant time. */
static pl_token_status_t check_signature(const char *signed_part, size_t signed_len,
                                         const char *sig, size_t sig_len,
                                         const pl_token_rules_t *rules)
{
    if (rules->secret == NULL || rules->secret_len == 0 || rules->secret_len > INT_MAX)
        return PL_TOKEN_BAD_SIG;
    size_t got_len = 0;
    unsigned char *got = b64url_decode(sig, sig_len, &got_len);
    if (got == NULL)
        return PL_TOKEN_MALFORMED;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    pl_token_status_t st = PL_TOKEN_BAD_SIG;
    if (HMAC(EVP_sha256(), rules->secret, (int)rules->secret_len,
             (const unsigned char *)signed_part, signed_len, mac, &mac_len) != NULL &&
        mac_len == SHA256_LEN && got_len == SHA256_LEN && CRYPTO_memcmp(mac, got, SHA256_LEN) == 0)
        st = PL_TOKEN_OK;
    OPENSSL_cleanse(mac, sizeof(mac));
    free(got);
    return st;
}

static int string_is(json_t *v, const char *want)
{
    return json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v) &&
           strcmp(json_string_value(v), want) == 0;
}

/* aud is a string or an array of strings (RFC 7519 4.1.3). */
static int audience_ok(json_t *aud, const char *want)
{
    if (json_is_array(aud)) {
        size_t i;
        json_t *v;
        json_array_foreach(aud, i, v) if (string_is(v, want)) return 1;
        return 0;
    }
    return string_is(aud, want);
}

static pl_token_status_t check_claims(json_t *c, const pl_token_rules_t *rules, int64_t now)
{
    json_t *exp = json_object_get(c, "exp");
    if (!json_is_integer(exp))
        return PL_TOKEN_NO_EXP;
    if (json_integer_value(exp) <= now)
        return PL_TOKEN_EXPIRED;
    json_t *nbf = json_object_get(c, "nbf");
    if (nbf != NULL) {
        if (!json_is_integer(nbf))
            return PL_TOKEN_MALFORMED;
        if (json_integer_value(nbf) > now + PL_TOKEN_NBF_LEEWAY)
            return PL_TOKEN_NOT_YET;
    }
    if (rules->issuer && *rules->issuer && !string_is(json_object_get(c, "iss"), rules->issuer))
        return PL_TOKEN_BAD_ISS;
    if (rules->audience && *rules->audience &&
        !audience_ok(json_object_get(c, "aud"), rules->audience))
        return PL_TOKEN_BAD_AUD;
    json_t *sub = json_object_get(c, "sub");
    if (!json_is_string(sub) ||
        !pl_token_valid_user(json_string_value(sub), json_string_length(sub)))
        return PL_TOKEN_BAD_SUB;
    json_t *name = json_object_get(c, "name");
    if (name != NULL && !json_is_string(name))
        return PL_TOKEN_MALFORMED;
    json_t *rooms = json_object_get(c, "rooms");
    if (rooms != NULL) {
        size_t i;
        json_t *r;
        if (!json_is_array(rooms))
            return PL_TOKEN_MALFORMED;
        json_array_foreach(rooms, i, r) if (!json_is_string(r)) return PL_TOKEN_MALFORMED;
    }
    return PL_TOKEN_OK;
}

pl_token_status_t pl_token_verify(const char *token, const pl_token_rules_t *rules, int64_t now,
                                  char **claims_json)
{
    if (claims_json)
        *claims_json = NULL;
    if (token == NULL || *token == '\0')
        return PL_TOKEN_MALFORMED;
    const char *dot1 = strchr(token, '.');
    const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    if (dot1 == NULL || dot2 == NULL || strchr(dot2 + 1, '.') != NULL)
        return PL_TOKEN_MALFORMED;
    /* the header first: an alg we do not accept is refused before anything
     * else is interpreted; then the signature, before the claims are read */
    pl_token_status_t st = check_header(token, (size_t)(dot1 - token));
    if (st != PL_TOKEN_OK)
        return st;
    st = check_signature(token, (size_t)(dot2 - token), dot2 + 1, strlen(dot2 + 1), rules);
    if (st != PL_TOKEN_OK)
        return st;
    json_t *c = decode_json_part(dot1 + 1, (size_t)(dot2 - dot1 - 1));
    if (c == NULL)
        return PL_TOKEN_MALFORMED;
    st = check_claims(c, rules, now);
    if (st == PL_TOKEN_OK && claims_json)
        *claims_json = json_dumps(c, JSON_COMPACT);
    json_decref(c);
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
