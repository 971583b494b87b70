#ifndef PIMESH_CURL_H
#define PIMESH_CURL_H

/* libcurl, loaded when the first transfer starts: linked, libcurl and its dependency chain
   (TLS, Kerberos, IDN, …) were loaded by every process that runs this binary, agents and CLI
   commands included, and by a lead that never uploads (issue 14). The header only gives the
   types and constants; nothing here links libcurl. */
#include <curl/curl.h>
#include <stddef.h>

/* Loads libcurl.so.4 once per process (it stays). 0 on success; otherwise -1 with the reason
   in `error`. */
int pimesh_curl_load(char *error, size_t size);

CURL *pimesh_curl_easy_init(void);
void pimesh_curl_easy_cleanup(CURL *curl);
CURLcode pimesh_curl_easy_perform(CURL *curl);
const char *pimesh_curl_easy_strerror(CURLcode code);
struct curl_slist *pimesh_curl_slist_append(struct curl_slist *list, const char *value);
void pimesh_curl_slist_free_all(struct curl_slist *list);

/* curl_easy_setopt and curl_easy_getinfo are variadic, which Swift cannot call: one typed
   wrapper per argument kind. */
typedef size_t (*pimesh_curl_io)(char *, size_t, size_t, void *);
typedef int (*pimesh_curl_progress)(void *, curl_off_t, curl_off_t, curl_off_t, curl_off_t);
CURLcode pimesh_curl_long(CURL *curl, CURLoption option, long value);
CURLcode pimesh_curl_string(CURL *curl, CURLoption option, const char *value);
CURLcode pimesh_curl_pointer(CURL *curl, CURLoption option, void *value);
CURLcode pimesh_curl_offset(CURL *curl, CURLoption option, curl_off_t value);
CURLcode pimesh_curl_callback(CURL *curl, CURLoption option, pimesh_curl_io value);
CURLcode pimesh_curl_progress_callback(CURL *curl, pimesh_curl_progress value);
CURLcode pimesh_curl_info_long(CURL *curl, CURLINFO info, long *value);

#endif
