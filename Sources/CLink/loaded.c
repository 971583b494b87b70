#define _GNU_SOURCE
#include "CLink.h"

#include <link.h>

struct collection {
    struct pimesh_loaded_segment *segments;
    size_t capacity;
    size_t count;
    size_t objects;
};

static int collect(struct dl_phdr_info *info, size_t size, void *context) {
    (void)size;
    struct collection *collection = context;
    for (ElfW(Half) i = 0; i < info->dlpi_phnum; i++) {
        if (collection->count < collection->capacity) {
            const ElfW(Phdr) *header = &info->dlpi_phdr[i];
            collection->segments[collection->count] = (struct pimesh_loaded_segment){
                .object = collection->objects,
                .base = info->dlpi_addr,
                .object_name = info->dlpi_name ? info->dlpi_name : "",
                .type = header->p_type,
                .flags = header->p_flags,
                .virtual_address = header->p_vaddr,
                .file_size = header->p_filesz,
                .memory_size = header->p_memsz,
            };
        }
        collection->count++;
    }
    collection->objects++;
    return 0;
}

size_t pimesh_loaded_segments(struct pimesh_loaded_segment *segments, size_t capacity) {
    struct collection collection = {segments, capacity, 0, 0};
    dl_iterate_phdr(collect, &collection);
    return collection.count;
}
