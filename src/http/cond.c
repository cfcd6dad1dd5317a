#include "http/cond.h"

#include <stdint.h>
#include <string.h>
#include <time.h>

#include "core/common.h"

static const char *const cond_wdays[7] = {"Sun", "Mon", "Tue", "Wed",
                                          "Thu", "Fri", "Sat"};

static const char *const cond_wdays_long[7] = {
    "Sunday",   "Monday", "Tuesday", "Wednesday",
    "Thursday", "Friday", "Saturday"};

static const char *const cond_months[12] = {"Jan", "Feb", "Mar", "Apr",
                                            "May", "Jun", "Jul", "Aug",
                                            "Sep", "Oct", "Nov", "Dec"};

static const char cond_hex_digits[16] = "0123456789abcdef";

/* The three forms RFC 9110 section 5.6.7 names, tried in order.  In these
 * patterns %a is a short day name, %A a long one, %b a month name, %d two
 * digits of day, %e a day as two digits or a space and a digit (asctime),
 * %Y four digits of year, %y two, %H %M %S two digits each; any other byte
 * must appear as is.  Names are case-sensitive, as the grammar says. */
static const char *const cond_date_forms[] = {
    "%a, %d %b %Y %H:%M:%S GMT", /* IMF-fixdate, the preferred form */
    "%A, %d-%b-%y %H:%M:%S GMT", /* RFC 850 */
    "%a %b %e %H:%M:%S %Y",      /* asctime() */
};

typedef struct cond_date {
    int year, mon, mday, hour, min, sec; /* mon 0-11 */
} cond_date_t;

/* Latest instant a four-digit year can show: 9999-12-31T23:59:59Z, and the
 * earliest: 0000-01-01T00:00:00Z. */
#define COND_TIME_MAX INT64_C(253402300799)
#define COND_TIME_MIN INT64_C(-62167219200)

static char *
cond_put2(char *p, int v)
{
    *p++ = (char)('0' + v / 10);
    *p++ = (char)('0' + v % 10);
    return p;
}

void
wf_http_date_format(time_t t, char *out)
{
    struct tm tm;
    int64_t v = (int64_t)t;
    char *p = out;

    /* Clamp so that the year always has four digits. */
    v = wf_max(wf_min(v, COND_TIME_MAX), COND_TIME_MIN);
    t = (time_t)v;
    if (gmtime_r(&t, &tm) == NULL) {
        t = 0;
        gmtime_r(&t, &tm);
    }

    memcpy(p, cond_wdays[tm.tm_wday], 3);
    p += 3;
    *p++ = ',';
    *p++ = ' ';
    p = cond_put2(p, tm.tm_mday);
    *p++ = ' ';
    memcpy(p, cond_months[tm.tm_mon], 3);
    p += 3;
    *p++ = ' ';
    p = cond_put2(p, (tm.tm_year + 1900) / 100);
    p = cond_put2(p, (tm.tm_year + 1900) % 100);
    *p++ = ' ';
    p = cond_put2(p, tm.tm_hour);
    *p++ = ':';
    p = cond_put2(p, tm.tm_min);
    *p++ = ':';
    p = cond_put2(p, tm.tm_sec);
    memcpy(p, " GMT", 4);
}

/* Reads n decimal digits at *p (p < last); returns the value or -1. */
static int
cond_digits(const char **p, const char *last, int n)
{
    int v = 0;

    if (last - *p < n) {
        return -1;
    }
    for (int i = 0; i < n; i++) {
        unsigned d = (unsigned)((*p)[i] - '0');

        if (d > 9) {
            return -1;
        }
        v = v * 10 + (int)d;
    }
    *p += n;
    return v;
}

/* Matches one of the names at *p and returns its index, or -1. */
static int
cond_name(const char **p, const char *last, const char *const *names,
          int nnames)
{
    for (int i = 0; i < nnames; i++) {
        size_t n = strlen(names[i]);
        const char *name = names[i];

        if ((size_t)(last - *p) >= n && memcmp(*p, name, n) == 0) {
            *p += n;
            return i;
        }
    }
    return -1;
}

/* The asctime day: two digits, or a space and one digit. */
static int
cond_day_padded(const char **p, const char *last)
{
    if (last - *p >= 2 && (*p)[0] == ' ') {
        (*p)++;
        return cond_digits(p, last, 1);
    }
    return cond_digits(p, last, 2);
}

/* Converts one %-conversion at *p into d.  Returns WF_OK or WF_ERROR. */
static int
cond_convert(char conv, const char **p, const char *last, cond_date_t *d)
{
    int v;

    switch (conv) {
    case 'a':
        v = cond_name(p, last, cond_wdays, 7);
        break;
    case 'A':
        v = cond_name(p, last, cond_wdays_long, 7);
        break;
    case 'b':
        v = d->mon = cond_name(p, last, cond_months, 12);
        break;
    case 'd':
        v = d->mday = cond_digits(p, last, 2);
        break;
    case 'e':
        v = d->mday = cond_day_padded(p, last);
        break;
    case 'Y':
        v = d->year = cond_digits(p, last, 4);
        break;
    case 'y':
        /* RFC 9110 wants a year over 50 years ahead taken as past; a fixed
         * pivot keeps this pure: 70-99 are 19xx, 00-69 are 20xx. */
        v = cond_digits(p, last, 2);
        d->year = v < 70 ? 2000 + v : 1900 + v;
        break;
    case 'H':
        v = d->hour = cond_digits(p, last, 2);
        break;
    case 'M':
        v = d->min = cond_digits(p, last, 2);
        break;
    default: /* 'S' */
        v = d->sec = cond_digits(p, last, 2);
        break;
    }
    return v < 0 ? WF_ERROR : WF_OK;
}

/* Matches s against one pattern of cond_date_forms, whole. */
static int
cond_date_match(const char *form, wf_str_t s, cond_date_t *d)
{
    const char *p = s.data, *last = s.data + s.len;

    for (; *form != '\0'; form++) {
        if (*form == '%') {
            form++;
            if (cond_convert(*form, &p, last, d) != WF_OK) {
                return WF_ERROR;
            }
            continue;
        }
        if (p == last || *p != *form) {
            return WF_ERROR;
        }
        p++;
    }
    return p == last ? WF_OK : WF_ERROR;
}

static bool
cond_is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days from 1970-01-01 to the proleptic Gregorian date y-m-d (m 1-12), after
 * Howard Hinnant's days_from_civil(). */
static int64_t
cond_days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Checks the ranges of d's fields and converts it to seconds since the
 * epoch.  A leap second (60) is accepted and counts as the next minute. */
static int
cond_date_to_time(const cond_date_t *d, time_t *t)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30,
                                  31, 31, 30, 31, 30, 31};
    int max_mday = mdays[d->mon] + (d->mon == 1 && cond_is_leap(d->year));
    int64_t v;

    if (d->mday < 1 || d->mday > max_mday || d->hour > 23 || d->min > 59
        || d->sec > 60) {
        return WF_ERROR;
    }
    v = cond_days_from_civil(d->year, d->mon + 1, d->mday) * 86400
        + d->hour * 3600 + d->min * 60 + d->sec;
    if ((int64_t)(time_t)v != v) {
        return WF_ERROR; /* a 32-bit time_t */
    }
    *t = (time_t)v;
    return WF_OK;
}

static wf_str_t
cond_trim(wf_str_t s)
{
    while (s.len > 0 && (s.data[0] == ' ' || s.data[0] == '\t')) {
        s.data++;
        s.len--;
    }
    while (s.len > 0
           && (s.data[s.len - 1] == ' ' || s.data[s.len - 1] == '\t')) {
        s.len--;
    }
    return s;
}

int
wf_http_date_parse(wf_str_t s, time_t *t)
{
    cond_date_t d = {0};

    s = cond_trim(s);
    for (size_t i = 0; i < wf_nitems(cond_date_forms); i++) {
        if (cond_date_match(cond_date_forms[i], s, &d) == WF_OK) {
            return cond_date_to_time(&d, t);
        }
    }
    return WF_ERROR;
}

/* Writes v in lower-case hex without leading zeros. */
static char *
cond_put_hex(char *p, uint64_t v)
{
    char tmp[16];
    size_t n = 0;

    do {
        tmp[n++] = cond_hex_digits[v & 0xf];
        v >>= 4;
    } while (v != 0);
    while (n > 0) {
        *p++ = tmp[--n];
    }
    return p;
}

size_t
wf_etag_format(char *out, time_t mtime, uint64_t size)
{
    char *p = out;
    int64_t m = (int64_t)mtime;

    *p++ = '"';
    if (m < 0) {
        /* Unit prints a signed time_t with a sign, as "%xT" does. */
        *p++ = '-';
        p = cond_put_hex(p, 0 - (uint64_t)m);
    } else {
        p = cond_put_hex(p, (uint64_t)m);
    }
    *p++ = '-';
    p = cond_put_hex(p, size);
    *p++ = '"';
    return (size_t)(p - out);
}

/* Strips an optional weak indicator "W/". */
static wf_str_t
cond_opaque(wf_str_t tag)
{
    if (tag.len >= 2 && tag.data[0] == 'W' && tag.data[1] == '/') {
        tag.data += 2;
        tag.len -= 2;
    }
    return tag;
}

/* Scans the entity-tag at s[*i] ([W/] DQUOTE *etagc DQUOTE) and returns it
 * whole, or a zero-length string when malformed.  *i ends after it. */
static wf_str_t
cond_scan_etag(wf_str_t s, size_t *i)
{
    size_t start = *i, j = *i;

    if (s.len - j >= 2 && s.data[j] == 'W' && s.data[j + 1] == '/') {
        j += 2;
    }
    if (j == s.len || s.data[j] != '"') {
        return wf_null_str;
    }
    for (j++; j < s.len && s.data[j] != '"'; j++) {
        unsigned char ch = (unsigned char)s.data[j];

        if (ch <= 0x20 || ch == 0x7f) {
            return wf_null_str; /* not etagc */
        }
    }
    if (j == s.len) {
        return wf_null_str;
    }
    *i = j + 1;
    return wf_str_make(s.data + start, *i - start);
}

static size_t
cond_skip_ows(wf_str_t s, size_t i)
{
    while (i < s.len && (s.data[i] == ' ' || s.data[i] == '\t')) {
        i++;
    }
    return i;
}

bool
wf_etag_list_match(wf_str_t if_none_match, wf_str_t etag)
{
    wf_str_t list = cond_trim(if_none_match), tag;
    wf_str_t want = cond_opaque(etag);
    size_t i = 0;

    if (list.len == 1 && list.data[0] == '*') {
        return true;
    }
    if (want.len == 0) {
        return false;
    }
    /* 1#entity-tag: empty elements and OWS around commas are allowed; a
     * malformed element makes the whole field fail to match. */
    while (i < list.len) {
        if (list.data[i] == ',' || list.data[i] == ' '
            || list.data[i] == '\t') {
            i++;
            continue;
        }
        tag = cond_scan_etag(list, &i);
        if (tag.len == 0) {
            return false;
        }
        if (wf_str_eq(cond_opaque(tag), want)) {
            return true;
        }
        i = cond_skip_ows(list, i);
        if (i < list.len && list.data[i] != ',') {
            return false;
        }
    }
    return false;
}

bool
wf_if_range_ok(wf_str_t if_range, wf_str_t etag, time_t mtime)
{
    wf_str_t v = cond_trim(if_range);
    time_t t;

    if (v.len == 0) {
        return true; /* absent: nothing restricts the range */
    }
    if (v.data[0] == '"') {
        /* Strong comparison: both strong and byte-identical. */
        return etag.len > 0 && etag.data[0] == '"' && wf_str_eq(v, etag);
    }
    if (v.data[0] == 'W' && v.len > 1 && v.data[1] == '/') {
        return false; /* a weak tag never passes a strong comparison */
    }
    return wf_http_date_parse(v, &t) == WF_OK && t == mtime;
}

bool
wf_cond_not_modified(wf_str_t if_none_match, wf_str_t if_modified_since,
                     wf_str_t etag, time_t mtime)
{
    time_t t;

    if (if_none_match.len > 0) {
        return wf_etag_list_match(if_none_match, etag);
    }
    if (if_modified_since.len > 0) {
        return wf_http_date_parse(if_modified_since, &t) == WF_OK && mtime <= t;
    }
    return false;
}
