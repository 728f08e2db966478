/*
 * log.c: level names, and the logfmt line pl_log_write puts on stderr
 * (captured in a temp file): prefix fields, the message quoted and
 * escaped up to the first tab, raw fields after it, one line per call even
 * for oversized input; and the level macros do not evaluate their
 * arguments below the level.
 */
#include "log.h"
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int saved_fd = -1;
static FILE *cap;

static void capture_start(void)
{
    fflush(stderr);
    cap = tmpfile();
    CU_ASSERT_PTR_NOT_NULL_FATAL(cap);
    saved_fd = dup(STDERR_FILENO);
    CU_ASSERT_FATAL(saved_fd >= 0);
    CU_ASSERT_FATAL(dup2(fileno(cap), STDERR_FILENO) >= 0);
}

/* Restores stderr and returns what was written (malloc'd). */
static char *capture_end(size_t *len)
{
    dup2(saved_fd, STDERR_FILENO);
    close(saved_fd);
    fseek(cap, 0, SEEK_END); /* the write(2)s moved the shared offset */
    long n = ftell(cap);
    rewind(cap);
    char *buf = calloc((size_t)n + 1, 1);
    size_t got = fread(buf, 1, (size_t)n, cap);
    fclose(cap);
    buf[got] = '\0';
    if (len)
        *len = got;
    return buf;
}

static void test_level_parse(void)
{
    CU_ASSERT_EQUAL(pl_log_level_parse("error"), PL_LOG_ERROR);
    CU_ASSERT_EQUAL(pl_log_level_parse("warn"), PL_LOG_WARN);
    CU_ASSERT_EQUAL(pl_log_level_parse("info"), PL_LOG_INFO);
    CU_ASSERT_EQUAL(pl_log_level_parse("debug"), PL_LOG_DEBUG);
    CU_ASSERT_EQUAL(pl_log_level_parse(""), -1);
    CU_ASSERT_EQUAL(pl_log_level_parse("Debug"), -1);
    CU_ASSERT_EQUAL(pl_log_level_parse("trace"), -1);
    CU_ASSERT_EQUAL(pl_log_level_parse("errors"), -1);
}

static void test_line_format(void)
{
    pl_log_init("unit-app", 3);
    capture_start();
    pl_log_write(PL_LOG_WARN, "worker exited\tslot=%d status=%s", 2, "signal=9");
    size_t len;
    char *out = capture_end(&len);
    pl_log_init("parley", -1);

    CU_ASSERT_EQUAL(strncmp(out, "ts=", 3), 0);
    /* ts=YYYY-MM-DDTHH:MM:SS.mmmZ */
    CU_ASSERT(len > 27 && out[7] == '-' && out[13] == 'T' && out[26] == 'Z' && out[27] == ' ');
    CU_ASSERT_PTR_NOT_NULL(strstr(out, " level=warn app=unit-app pid="));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, " worker=3 msg=\"worker exited\" slot=2 status=signal=9\n"));
    CU_ASSERT_EQUAL(out[len - 1], '\n');
    CU_ASSERT_PTR_NULL(memchr(out, '\n', len - 1)); /* one line */
    free(out);

    /* a master (worker -1) has no worker field */
    capture_start();
    pl_log_write(PL_LOG_ERROR, "plain");
    out = capture_end(&len);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, " level=error app=parley pid="));
    CU_ASSERT_PTR_NULL(strstr(out, "worker="));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, " msg=\"plain\"\n"));
    free(out);
}

/* Quotes, backslashes and control bytes in the message are escaped, so a
 * client-supplied string cannot forge fields or lines. */
static void test_message_escaping(void)
{
    capture_start();
    pl_log_write(PL_LOG_INFO, "%s", "say \"hi\" \\ now\nlevel=error\x01\x1b[31m\x7f");
    size_t len;
    char *out = capture_end(&len);
    CU_ASSERT_PTR_NOT_NULL(
        strstr(out, " msg=\"say \\\"hi\\\" \\\\ now\\x0alevel=error\\x01\\x1b[31m\\x7f\"\n"));
    CU_ASSERT_PTR_NULL(memchr(out, '\n', len - 1));
    free(out);

    /* bytes >= 0x80 pass through (UTF-8 stays readable) */
    capture_start();
    pl_log_write(PL_LOG_INFO, "caf\xc3\xa9");
    out = capture_end(&len);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, " msg=\"caf\xc3\xa9\"\n"));
    free(out);
}

/* A message or fields far beyond the buffers still make one complete,
 * newline-terminated line with a closed quote. */
static void test_oversized(void)
{
    size_t n = 10000;
    char *big = malloc(n + 1);
    memset(big, 'm', n);
    big[n] = '\0';
    capture_start();
    pl_log_write(PL_LOG_INFO, "%s", big);
    size_t len;
    char *out = capture_end(&len);
    CU_ASSERT(len > 2000 && len <= 4096);
    CU_ASSERT_EQUAL(out[len - 1], '\n');
    CU_ASSERT_EQUAL(out[len - 2], '"');
    CU_ASSERT_PTR_NULL(memchr(out, '\n', len - 1));
    free(out);

    /* all control bytes: each becomes 4 bytes, the quote still closes */
    memset(big, '\x02', n);
    capture_start();
    pl_log_write(PL_LOG_INFO, "%s", big);
    out = capture_end(&len);
    CU_ASSERT(len <= 4096);
    CU_ASSERT_EQUAL(out[len - 1], '\n');
    CU_ASSERT_EQUAL(out[len - 2], '"');
    free(out);

    /* raw fields after a message that filled the line are cut to fit */
    memset(big, '\x02', 1000);
    big[1000] = '\t';
    memset(big + 1001, 'f', 1000);
    big[2001] = '\0';
    capture_start();
    pl_log_write(PL_LOG_INFO, "%s", big);
    out = capture_end(&len);
    CU_ASSERT(len <= 4096);
    CU_ASSERT_EQUAL(out[len - 1], '\n');
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\\x02\\x02\" f"));
    CU_ASSERT_PTR_NULL(memchr(out, '\n', len - 1));
    free(out);
    free(big);
}

static int evaluated;
static int count(void)
{
    return ++evaluated;
}

/* Below the level the macros neither format nor evaluate; error always
 * logs. */
static void test_level_filter(void)
{
    int saved = pl_log_level;
    pl_log_level = PL_LOG_WARN;
    evaluated = 0;
    capture_start();
    pl_log_debug("debug %d", count());
    pl_log_info("info %d", count());
    pl_log_warn("warn %d", count());
    pl_log_error("error %d", count());
    size_t len;
    char *out = capture_end(&len);
    pl_log_level = saved;
    CU_ASSERT_EQUAL(evaluated, 2);
    CU_ASSERT_PTR_NULL(strstr(out, "level=debug"));
    CU_ASSERT_PTR_NULL(strstr(out, "level=info"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "level=warn"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "msg=\"error 2\""));
    free(out);

    pl_log_level = PL_LOG_ERROR;
    capture_start();
    pl_log_warn("hidden");
    out = capture_end(&len);
    pl_log_level = saved;
    CU_ASSERT_EQUAL(len, 0);
    free(out);
}

PL_UNIT_SUITE(log, PL_TEST(test_level_parse), PL_TEST(test_line_format),
              PL_TEST(test_message_escaping), PL_TEST(test_oversized), PL_TEST(test_level_filter))
