/*
 * token.c: the verifier against tokens signed by libjwt (pl_token_sign)
 * and by this file's own signer (any header, any HMAC digest), so that
 * every refusal is tested with an otherwise valid signature: tampered
 * payload and signature, every alg but HS256, exp and nbf boundaries,
 * iss and aud rules, malformed encodings.
 */
#include "token.h"
#include "unit.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECRET ((const uint8_t *)"test-secret")
#define SECRET_LEN 11
#define NOW 1700000000LL

static const pl_token_rules_t RULES = {.secret = SECRET, .secret_len = SECRET_LEN};

static pl_token_status_t verify(const char *t)
{
    return pl_token_verify(t, &RULES, NOW, NULL);
}

static char *sign(const char *claims)
{
    char *t = pl_token_sign(claims, SECRET, SECRET_LEN);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    return t;
}

/* base64url without padding, appended to out */
static void b64url(char *out, const unsigned char *in, size_t n)
{
    char *buf = malloc(4 * (n / 3 + 1) + 1);
    int len = EVP_EncodeBlock((unsigned char *)buf, in, (int)n);
    while (len > 0 && buf[len - 1] == '=')
        len--;
    buf[len] = '\0';
    for (char *p = buf; *p; p++)
        *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
    strcat(out, buf);
    free(buf);
}

/* header.payload.HMAC-<md>(header.payload) with SECRET; md NULL leaves the
 * signature empty. Returns a malloc'd token. */
static char *make(const char *header, const char *payload, const EVP_MD *md)
{
    size_t cap = 2 * (strlen(header) + strlen(payload)) + 256;
    char *t = calloc(1, cap);
    b64url(t, (const unsigned char *)header, strlen(header));
    strcat(t, ".");
    b64url(t, (const unsigned char *)payload, strlen(payload));
    size_t signed_len = strlen(t);
    strcat(t, ".");
    if (md) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        HMAC(md, SECRET, SECRET_LEN, (const unsigned char *)t, signed_len, mac, &n);
        b64url(t, mac, n);
    }
    return t;
}

#define HS256 "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

/* HS256 with our signer, payload as given */
static pl_token_status_t verify_payload(const char *payload, const pl_token_rules_t *rules)
{
    char *t = make(HS256, payload, EVP_sha256());
    pl_token_status_t st = pl_token_verify(t, rules, NOW, NULL);
    free(t);
    return st;
}

static void test_roundtrip(void)
{
    char *t =
        sign("{\"sub\":\"alice\",\"exp\":1700003600,\"name\":\"Alice\",\"rooms\":[\"a\",\"b*\"]}");
    char *claims = NULL;
    CU_ASSERT_EQUAL(pl_token_verify(t, &RULES, NOW, &claims), PL_TOKEN_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(claims);
    json_t *c = json_loads(claims, 0, NULL);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(c, "sub")), "alice");
    CU_ASSERT_EQUAL(json_array_size(json_object_get(c, "rooms")), 2);
    json_decref(c);
    free(claims);
    free(t);

    /* our own signer agrees with libjwt's */
    t = make(HS256, "{\"sub\":\"bob\",\"exp\":1700003600}", EVP_sha256());
    CU_ASSERT_EQUAL(verify(t), PL_TOKEN_OK);
    free(t);
    /* a refused token leaves *claims_json NULL */
    claims = (char *)"x";
    CU_ASSERT_EQUAL(pl_token_verify("a.b.c", &RULES, NOW, &claims), PL_TOKEN_MALFORMED);
    CU_ASSERT_PTR_NULL(claims);
}

/* Payload or signature changed after signing, another secret, no secret. */
static void test_tampered(void)
{
    char *t = sign("{\"sub\":\"alice\",\"exp\":1700003600}");
    pl_token_rules_t other = {.secret = (const uint8_t *)"other", .secret_len = 5};
    CU_ASSERT_EQUAL(pl_token_verify(t, &other, NOW, NULL), PL_TOKEN_BAD_SIG);
    pl_token_rules_t none = {0};
    CU_ASSERT_EQUAL(pl_token_verify(t, &none, NOW, NULL), PL_TOKEN_BAD_SIG);

    /* the payload swapped for another user's, signature kept */
    char *u = make(HS256, "{\"sub\":\"admin\",\"exp\":1700003600}", EVP_sha256());
    char *tdot = strrchr(t, '.'), *udot = strrchr(u, '.');
    char *mixed = calloc(1, strlen(t) + strlen(u));
    memcpy(mixed, u, (size_t)(udot - u));
    strcat(mixed, tdot);
    CU_ASSERT_EQUAL(verify(mixed), PL_TOKEN_BAD_SIG);
    free(mixed);
    free(u);

    /* one signature character changed; the signature cut short; extended */
    char *sig = tdot + 1;
    char saved = sig[0];
    sig[0] = saved == 'A' ? 'B' : 'A';
    CU_ASSERT_EQUAL(verify(t), PL_TOKEN_BAD_SIG);
    sig[0] = saved;
    CU_ASSERT_EQUAL(verify(t), PL_TOKEN_OK);
    size_t n = strlen(sig);
    sig[n - 3] = '\0'; /* 40 characters: 30 bytes, a valid encoding */
    CU_ASSERT_EQUAL(verify(t), PL_TOKEN_BAD_SIG);
    free(t);

    /* the last character's unused bits are part of the encoding: a 43
     * char HS256 signature leaves 2 of them, which must be zero */
    t = sign("{\"sub\":\"alice\",\"exp\":1700003600}");
    sig = strrchr(t, '.') + 1;
    CU_ASSERT_EQUAL_FATAL(strlen(sig), 43);
    const char *alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    int v = (int)(strchr(alpha, sig[42]) - alpha);
    sig[42] = alpha[v | 1];
    CU_ASSERT_EQUAL(verify(t), PL_TOKEN_MALFORMED);
    sig[42] = alpha[v];
    CU_ASSERT_EQUAL(verify(t), PL_TOKEN_OK);
    free(t);
}

/* Every header alg but "HS256" is refused, whatever the signature. */
static void test_alg(void)
{
    const char *p = "{\"sub\":\"alice\",\"exp\":1700003600}";
    struct {
        const char *header;
        const EVP_MD *md;
    } cases[] = {
        {"{\"alg\":\"none\",\"typ\":\"JWT\"}", NULL},
        {"{\"alg\":\"none\"}", EVP_sha256()}, /* none with a good HS256 signature */
        {"{\"alg\":\"HS512\",\"typ\":\"JWT\"}", EVP_sha512()},
        {"{\"alg\":\"HS384\"}", EVP_sha384()},
        {"{\"alg\":\"RS256\",\"typ\":\"JWT\"}", EVP_sha256()}, /* key confusion */
        {"{\"alg\":\"ES256\"}", EVP_sha256()},
        {"{\"alg\":\"hs256\"}", EVP_sha256()},
        {"{\"alg\":\"HS256 \"}", EVP_sha256()},
        {"{\"typ\":\"JWT\"}", EVP_sha256()},
        {"{\"alg\":256}", EVP_sha256()},
        {"{\"alg\":null}", EVP_sha256()},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *t = make(cases[i].header, p, cases[i].md);
        if (verify(t) != PL_TOKEN_BAD_ALG)
            fprintf(stderr, "\nalg case %zu: %s -> %s\n", i, cases[i].header,
                    pl_token_status_str(verify(t)));
        CU_ASSERT_EQUAL(verify(t), PL_TOKEN_BAD_ALG);
        free(t);
    }
    /* a header we would have to understand */
    char *t = make("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", p, EVP_sha256());
    CU_ASSERT_EQUAL(verify(t), PL_TOKEN_MALFORMED);
    free(t);
    t = make("[\"HS256\"]", p, EVP_sha256());
    CU_ASSERT_EQUAL(verify(t), PL_TOKEN_MALFORMED);
    free(t);
    /* libjwt-era test vectors: alg none unsigned, HS512 header */
    CU_ASSERT_EQUAL(verify("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0."
                           "eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0."),
                    PL_TOKEN_BAD_ALG);
    CU_ASSERT_EQUAL(verify("eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiJhIiwiZXhwIjo5OTk5OTk5OTk5fQ.AAAA"),
                    PL_TOKEN_BAD_ALG);
}

/* exp: required integer, valid while now < exp (no leeway). */
static void test_exp(void)
{
    char buf[128];
    snprintf(buf, sizeof(buf), "{\"sub\":\"a\",\"exp\":%lld}", NOW + 1);
    CU_ASSERT_EQUAL(verify_payload(buf, &RULES), PL_TOKEN_OK);
    snprintf(buf, sizeof(buf), "{\"sub\":\"a\",\"exp\":%lld}", NOW);
    CU_ASSERT_EQUAL(verify_payload(buf, &RULES), PL_TOKEN_EXPIRED);
    snprintf(buf, sizeof(buf), "{\"sub\":\"a\",\"exp\":%lld}", NOW - 1);
    CU_ASSERT_EQUAL(verify_payload(buf, &RULES), PL_TOKEN_EXPIRED);
    CU_ASSERT_EQUAL(verify_payload("{\"sub\":\"a\"}", &RULES), PL_TOKEN_NO_EXP);
    CU_ASSERT_EQUAL(verify_payload("{\"sub\":\"a\",\"exp\":\"1700003600\"}", &RULES),
                    PL_TOKEN_NO_EXP);
    CU_ASSERT_EQUAL(verify_payload("{\"sub\":\"a\",\"exp\":1700003600.5}", &RULES),
                    PL_TOKEN_NO_EXP);
    CU_ASSERT_EQUAL(verify_payload("{\"sub\":\"a\",\"exp\":null}", &RULES), PL_TOKEN_NO_EXP);
}

/* nbf: optional integer, may be up to PL_TOKEN_NBF_LEEWAY seconds ahead. */
static void test_nbf(void)
{
    char buf[128];
    long long cases[][2] = {
        {NOW - 100, PL_TOKEN_OK},
        {NOW, PL_TOKEN_OK},
        {NOW + PL_TOKEN_NBF_LEEWAY, PL_TOKEN_OK},
        {NOW + PL_TOKEN_NBF_LEEWAY + 1, PL_TOKEN_NOT_YET},
        {NOW + 3600, PL_TOKEN_NOT_YET},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(buf, sizeof(buf), "{\"sub\":\"a\",\"exp\":1700003600,\"nbf\":%lld}", cases[i][0]);
        CU_ASSERT_EQUAL(verify_payload(buf, &RULES), (pl_token_status_t)cases[i][1]);
    }
    CU_ASSERT_EQUAL(verify_payload("{\"sub\":\"a\",\"exp\":1700003600,\"nbf\":\"0\"}", &RULES),
                    PL_TOKEN_MALFORMED);
    /* an expired token is expired, whatever its nbf */
    CU_ASSERT_EQUAL(verify_payload("{\"sub\":\"a\",\"exp\":1600000000,\"nbf\":1500000000}", &RULES),
                    PL_TOKEN_EXPIRED);
}

/* iss: checked only when the issuer rule is set, then exactly. */
static void test_iss(void)
{
    pl_token_rules_t r = RULES;
    r.issuer = "https://auth.example";
    CU_ASSERT_EQUAL(verify_payload("{\"sub\":\"a\",\"exp\":1700003600,"
                                   "\"iss\":\"https://auth.example\"}",
                                   &r),
                    PL_TOKEN_OK);
    CU_ASSERT_EQUAL(verify_payload("{\"sub\":\"a\",\"exp\":1700003600}", &r), PL_TOKEN_BAD_ISS);
    CU_ASSERT_EQUAL(verify_payload("{\"sub\":\"a\",\"exp\":1700003600,"
                                   "\"iss\":\"https://evil.example\"}",
                                   &r),
                    PL_TOKEN_BAD_ISS);
    CU_ASSERT_EQUAL(verify_payload("{\"sub\":\"a\",\"exp\":1700003600,"
                                   "\"iss\":\"https://auth.example/\"}",
                                   &r),
                    PL_TOKEN_BAD_ISS);
    CU_ASSERT_EQUAL(verify_payload("{\"sub\":\"a\",\"exp\":1700003600,"
                                   "\"iss\":[\"https://auth.example\"]}",
                                   &r),
                    PL_TOKEN_BAD_ISS);
    /* not configured (NULL or ""): anything goes */
    r.issuer = "";
    CU_ASSERT_EQUAL(verify_payload("{\"sub\":\"a\",\"exp\":1700003600,\"iss\":\"x\"}", &r),
                    PL_TOKEN_OK);
    CU_ASSERT_EQUAL(verify_payload("{\"sub\":\"a\",\"exp\":1700003600,\"iss\":5}", &RULES),
                    PL_TOKEN_OK);
}

/* aud: a string or an array of strings that must name the audience when
 * one is configured. */
static void test_aud(void)
{
    pl_token_rules_t r = RULES;
    r.audience = "parley";
    const char *ok[] = {"\"parley\"", "[\"parley\"]", "[\"other\",\"parley\"]"};
    const char *bad[] = {"\"other\"", "\"Parley\"", "[]", "[\"other\"]", "5", "null", "{}"};
    char buf[160];
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        snprintf(buf, sizeof(buf), "{\"sub\":\"a\",\"exp\":1700003600,\"aud\":%s}", ok[i]);
        CU_ASSERT_EQUAL(verify_payload(buf, &r), PL_TOKEN_OK);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(buf, sizeof(buf), "{\"sub\":\"a\",\"exp\":1700003600,\"aud\":%s}", bad[i]);
        CU_ASSERT_EQUAL(verify_payload(buf, &r), PL_TOKEN_BAD_AUD);
        /* not configured: ignored */
        CU_ASSERT_EQUAL(verify_payload(buf, &RULES), PL_TOKEN_OK);
    }
    CU_ASSERT_EQUAL(verify_payload("{\"sub\":\"a\",\"exp\":1700003600}", &r), PL_TOKEN_BAD_AUD);
    /* both rules at once */
    r.issuer = "i";
    CU_ASSERT_EQUAL(verify_payload("{\"sub\":\"a\",\"exp\":1700003600,\"iss\":\"i\","
                                   "\"aud\":\"parley\"}",
                                   &r),
                    PL_TOKEN_OK);
    CU_ASSERT_EQUAL(verify_payload("{\"sub\":\"a\",\"exp\":1700003600,\"iss\":\"j\","
                                   "\"aud\":\"parley\"}",
                                   &r),
                    PL_TOKEN_BAD_ISS);
}

/* Claims and encodings that are refused with a good signature. */
static void test_refused(void)
{
    CU_ASSERT_EQUAL(verify_payload("{\"exp\":1700003600}", &RULES), PL_TOKEN_BAD_SUB);
    CU_ASSERT_EQUAL(verify_payload("{\"sub\":\"al ice\",\"exp\":1700003600}", &RULES),
                    PL_TOKEN_BAD_SUB);
    CU_ASSERT_EQUAL(
        verify_payload("{\"sub\":\"alice\",\"exp\":1700003600,\"rooms\":\"a\"}", &RULES),
        PL_TOKEN_MALFORMED);
    CU_ASSERT_EQUAL(verify_payload("{\"sub\":\"alice\",\"exp\":1700003600,\"rooms\":[1]}", &RULES),
                    PL_TOKEN_MALFORMED);
    CU_ASSERT_EQUAL(verify_payload("{\"sub\":\"alice\",\"exp\":1700003600,\"name\":1}", &RULES),
                    PL_TOKEN_MALFORMED);
    /* two subs: the issuer and we might read different ones */
    CU_ASSERT_EQUAL(
        verify_payload("{\"sub\":\"alice\",\"sub\":\"admin\",\"exp\":1700003600}", &RULES),
        PL_TOKEN_MALFORMED);
    CU_ASSERT_EQUAL(verify_payload("[1,2]", &RULES), PL_TOKEN_MALFORMED);
    CU_ASSERT_EQUAL(verify_payload("not json", &RULES), PL_TOKEN_MALFORMED);

    CU_ASSERT_EQUAL(verify(""), PL_TOKEN_MALFORMED);
    CU_ASSERT_EQUAL(pl_token_verify(NULL, &RULES, NOW, NULL), PL_TOKEN_MALFORMED);
    CU_ASSERT_EQUAL(verify("not-a-jwt"), PL_TOKEN_MALFORMED);
    CU_ASSERT_EQUAL(verify("a.b"), PL_TOKEN_MALFORMED);
    CU_ASSERT_EQUAL(verify("!!!.b.c"), PL_TOKEN_MALFORMED);
    CU_ASSERT_NOT_EQUAL(verify("eyJhbGciOiJIUzI1NiJ9.%%%.abc"), PL_TOKEN_OK);

    /* padding, the standard alphabet, a fourth part: not base64url JWS */
    char *t = sign("{\"sub\":\"alice\",\"exp\":1700003600}");
    CU_ASSERT_EQUAL_FATAL(verify(t), PL_TOKEN_OK);
    size_t n = strlen(t);
    char *x = calloc(1, n + 8);
    snprintf(x, n + 8, "%s=", t);
    CU_ASSERT_EQUAL(verify(x), PL_TOKEN_MALFORMED);
    snprintf(x, n + 8, "%s.", t);
    CU_ASSERT_EQUAL(verify(x), PL_TOKEN_MALFORMED);
    snprintf(x, n + 8, "%s", t);
    char *sig = strrchr(x, '.') + 1;
    for (char *p = sig; *p; p++)
        if (*p == '-' || *p == '_')
            *p = *p == '-' ? '+' : '/';
    if (strpbrk(sig, "+/"))
        CU_ASSERT_EQUAL(verify(x), PL_TOKEN_MALFORMED);
    free(x);
    free(t);
}

static void test_valid_user(void)
{
    CU_ASSERT_TRUE(pl_token_valid_user("a", 1));
    CU_ASSERT_TRUE(pl_token_valid_user("A.b-c_9", 7));
    CU_ASSERT_FALSE(pl_token_valid_user("", 0));
    CU_ASSERT_FALSE(pl_token_valid_user("a:b", 3));
    CU_ASSERT_FALSE(pl_token_valid_user("a|b", 3));
    char u[66];
    memset(u, 'x', 65);
    u[65] = '\0';
    CU_ASSERT_TRUE(pl_token_valid_user(u, 64));
    CU_ASSERT_FALSE(pl_token_valid_user(u, 65));
}

PL_UNIT_SUITE(token, PL_TEST(test_roundtrip), PL_TEST(test_tampered), PL_TEST(test_alg),
              PL_TEST(test_exp), PL_TEST(test_nbf), PL_TEST(test_iss), PL_TEST(test_aud),
              PL_TEST(test_refused), PL_TEST(test_valid_user))
