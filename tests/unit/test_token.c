/*
 * token.c: sign/verify round trip and every token the gateway must refuse
 * (forged, expired, alg none, no exp, bad sub, malformed).
 */
#include "token.h"
#include "unit.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECRET ((const uint8_t *)"test-secret")
#define SECRET_LEN 11
#define NOW 1700000000LL

static char *sign(const char *claims)
{
    return pl_token_sign(claims, SECRET, SECRET_LEN);
}

static void test_roundtrip(void)
{
    char *t =
        sign("{\"sub\":\"alice\",\"exp\":1700003600,\"name\":\"Alice\",\"rooms\":[\"a\",\"b*\"]}");
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    char *claims = NULL;
    CU_ASSERT_EQUAL(pl_token_verify(t, SECRET, SECRET_LEN, NOW, &claims), PL_TOKEN_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(claims);
    json_t *c = json_loads(claims, 0, NULL);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(c, "sub")), "alice");
    CU_ASSERT_EQUAL(json_array_size(json_object_get(c, "rooms")), 2);
    json_decref(c);
    free(claims);
    free(t);
}

static void test_refused(void)
{
    char *t = sign("{\"sub\":\"alice\",\"exp\":1700003600}");
    CU_ASSERT_EQUAL(pl_token_verify(t, (const uint8_t *)"other", 5, NOW, NULL), PL_TOKEN_BAD_SIG);
    /* tamper with the signature */
    char *dot = strrchr(t, '.');
    dot[1] = dot[1] == 'A' ? 'B' : 'A';
    CU_ASSERT_EQUAL(pl_token_verify(t, SECRET, SECRET_LEN, NOW, NULL), PL_TOKEN_BAD_SIG);
    free(t);

    t = sign("{\"sub\":\"alice\",\"exp\":1699999999}");
    CU_ASSERT_EQUAL(pl_token_verify(t, SECRET, SECRET_LEN, NOW, NULL), PL_TOKEN_EXPIRED);
    free(t);
    t = sign("{\"sub\":\"alice\"}");
    CU_ASSERT_EQUAL(pl_token_verify(t, SECRET, SECRET_LEN, NOW, NULL), PL_TOKEN_NO_EXP);
    free(t);
    t = sign("{\"sub\":\"alice\",\"exp\":\"1700003600\"}");
    CU_ASSERT_EQUAL(pl_token_verify(t, SECRET, SECRET_LEN, NOW, NULL), PL_TOKEN_NO_EXP);
    free(t);
    t = sign("{\"exp\":1700003600}");
    CU_ASSERT_EQUAL(pl_token_verify(t, SECRET, SECRET_LEN, NOW, NULL), PL_TOKEN_BAD_SUB);
    free(t);
    t = sign("{\"sub\":\"al ice\",\"exp\":1700003600}");
    CU_ASSERT_EQUAL(pl_token_verify(t, SECRET, SECRET_LEN, NOW, NULL), PL_TOKEN_BAD_SUB);
    free(t);
    t = sign("{\"sub\":\"alice\",\"exp\":1700003600,\"rooms\":\"a\"}");
    CU_ASSERT_EQUAL(pl_token_verify(t, SECRET, SECRET_LEN, NOW, NULL), PL_TOKEN_MALFORMED);
    free(t);

    /* alg none: {"alg":"none","typ":"JWT"}.{"sub":"alice","exp":9999999999}. */
    const char *none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0."
                       "eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0.";
    CU_ASSERT_EQUAL(pl_token_verify(none, SECRET, SECRET_LEN, NOW, NULL), PL_TOKEN_BAD_ALG);
    /* HS512 header */
    const char *hs512 = "eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiJhIiwiZXhwIjo5OTk5OTk5OTk5fQ.AAAA";
    CU_ASSERT_EQUAL(pl_token_verify(hs512, SECRET, SECRET_LEN, NOW, NULL), PL_TOKEN_BAD_ALG);

    CU_ASSERT_EQUAL(pl_token_verify("", SECRET, SECRET_LEN, NOW, NULL), PL_TOKEN_MALFORMED);
    CU_ASSERT_EQUAL(pl_token_verify("not-a-jwt", SECRET, SECRET_LEN, NOW, NULL),
                    PL_TOKEN_MALFORMED);
    CU_ASSERT_EQUAL(pl_token_verify("a.b", SECRET, SECRET_LEN, NOW, NULL), PL_TOKEN_MALFORMED);
    CU_ASSERT_EQUAL(pl_token_verify("!!!.b.c", SECRET, SECRET_LEN, NOW, NULL), PL_TOKEN_MALFORMED);
    CU_ASSERT_NOT_EQUAL(
        pl_token_verify("eyJhbGciOiJIUzI1NiJ9.%%%.abc", SECRET, SECRET_LEN, NOW, NULL),
        PL_TOKEN_OK);
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

PL_UNIT_SUITE(token, PL_TEST(test_roundtrip), PL_TEST(test_refused), PL_TEST(test_valid_user))
