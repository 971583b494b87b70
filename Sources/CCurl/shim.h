#include <curl/curl.h>

/* curl_easy_setopt and curl_easy_getinfo are variadic, which Swift cannot call: one typed
   wrapper per argument kind. */
typedef size_t (*pimesh_curl_io)(char *, size_t, size_t, void *);

static inline CURLcode pimesh_curl_long(CURL *curl, CURLoption option, long value) {
    return curl_easy_setopt(curl, option, value);
}
static inline CURLcode pimesh_curl_string(CURL *curl, CURLoption option, const char *value) {
    return curl_easy_setopt(curl, option, value);
}
static inline CURLcode pimesh_curl_pointer(CURL *curl, CURLoption option, void *value) {
    return curl_easy_setopt(curl, option, value);
}
static inline CURLcode pimesh_curl_offset(CURL *curl, CURLoption option, curl_off_t value) {
    return curl_easy_setopt(curl, option, value);
}
static inline CURLcode pimesh_curl_callback(CURL *curl, CURLoption option, pimesh_curl_io value) {
    return curl_easy_setopt(curl, option, value);
}
typedef int (*pimesh_curl_progress)(void *, curl_off_t, curl_off_t, curl_off_t, curl_off_t);
static inline CURLcode pimesh_curl_progress_callback(CURL *curl, pimesh_curl_progress value) {
    return curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, value);
}
static inline CURLcode pimesh_curl_info_long(CURL *curl, CURLINFO info, long *value) {
    return curl_easy_getinfo(curl, info, value);
}
