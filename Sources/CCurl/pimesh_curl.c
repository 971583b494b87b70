#include "pimesh_curl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static void *library;

static CURLcode (*global_init)(long);
static CURL *(*easy_init)(void);
static void (*easy_cleanup)(CURL *);
static CURLcode (*easy_perform)(CURL *);
static const char *(*easy_strerror)(CURLcode);
static CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
static CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
static struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
static void (*slist_free_all)(struct curl_slist *);

#define RESOLVE(pointer, symbol)                                                          \
    do {                                                                                  \
        *(void **)(&pointer) = dlsym(handle, symbol);                                     \
        if (!pointer) {                                                                   \
            snprintf(error, size, "libcurl.so.4 has no %s: %s", symbol, dlerror());       \
            dlclose(handle);                                                              \
            pthread_mutex_unlock(&lock);                                                  \
            return -1;                                                                    \
        }                                                                                 \
    } while (0)

int pimesh_curl_load(char *error, size_t size) {
    pthread_mutex_lock(&lock);
    if (library) {
        pthread_mutex_unlock(&lock);
        return 0;
    }
    /* Never unloaded (RTLD_NODELETE, no curl_global_cleanup): a transfer that times out while
       a name lookup blocks leaves libcurl's resolver thread running in libcurl's code. */
    void *handle = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!handle) {
        snprintf(error, size, "cannot load libcurl.so.4 (apt-get install libcurl4, or libcurl4t64 on Debian 13): %s", dlerror());
        pthread_mutex_unlock(&lock);
        return -1;
    }
    RESOLVE(global_init, "curl_global_init");
    RESOLVE(easy_init, "curl_easy_init");
    RESOLVE(easy_cleanup, "curl_easy_cleanup");
    RESOLVE(easy_perform, "curl_easy_perform");
    RESOLVE(easy_strerror, "curl_easy_strerror");
    RESOLVE(easy_setopt, "curl_easy_setopt");
    RESOLVE(easy_getinfo, "curl_easy_getinfo");
    RESOLVE(slist_append, "curl_slist_append");
    RESOLVE(slist_free_all, "curl_slist_free_all");
    CURLcode code = global_init(CURL_GLOBAL_DEFAULT);
    if (code != CURLE_OK) {
        snprintf(error, size, "curl_global_init: %s", easy_strerror(code));
        dlclose(handle);
        pthread_mutex_unlock(&lock);
        return -1;
    }
    library = handle;
    pthread_mutex_unlock(&lock);
    return 0;
}

CURL *pimesh_curl_easy_init(void) { return easy_init(); }
void pimesh_curl_easy_cleanup(CURL *curl) { easy_cleanup(curl); }
CURLcode pimesh_curl_easy_perform(CURL *curl) { return easy_perform(curl); }
const char *pimesh_curl_easy_strerror(CURLcode code) { return easy_strerror(code); }
struct curl_slist *pimesh_curl_slist_append(struct curl_slist *list, const char *value) { return slist_append(list, value); }
void pimesh_curl_slist_free_all(struct curl_slist *list) { slist_free_all(list); }

CURLcode pimesh_curl_long(CURL *curl, CURLoption option, long value) { return easy_setopt(curl, option, value); }
CURLcode pimesh_curl_string(CURL *curl, CURLoption option, const char *value) { return easy_setopt(curl, option, value); }
CURLcode pimesh_curl_pointer(CURL *curl, CURLoption option, void *value) { return easy_setopt(curl, option, value); }
CURLcode pimesh_curl_offset(CURL *curl, CURLoption option, curl_off_t value) { return easy_setopt(curl, option, value); }
CURLcode pimesh_curl_callback(CURL *curl, CURLoption option, pimesh_curl_io value) { return easy_setopt(curl, option, value); }
CURLcode pimesh_curl_progress_callback(CURL *curl, pimesh_curl_progress value) {
    return easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, value);
}
CURLcode pimesh_curl_info_long(CURL *curl, CURLINFO info, long *value) { return easy_getinfo(curl, info, value); }
