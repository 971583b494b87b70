#define _GNU_SOURCE
#include "CLink.h"

#include <elf.h>
#include <link.h>
#include <stdlib.h>

struct visit {
    pimesh_loaded_object_visitor visit;
    void *context;
    int failed;
};

/* Whether the object's dynamic section asks for text relocations: the loader then makes its
   read-only segments writable, patches them and protects them again. */
static int has_text_relocations(const struct dl_phdr_info *info) {
    for (ElfW(Half) i = 0; i < info->dlpi_phnum; i++) {
        if (info->dlpi_phdr[i].p_type != PT_DYNAMIC) continue;
        const ElfW(Dyn) *entry = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
        for (; entry->d_tag != DT_NULL; entry++) {
            if (entry->d_tag == DT_TEXTREL) return 1;
            if (entry->d_tag == DT_FLAGS && (entry->d_un.d_val & DF_TEXTREL)) return 1;
        }
    }
    return 0;
}

static int visit_one(struct dl_phdr_info *info, size_t size, void *context) {
    (void)size;
    struct visit *visit = context;
    struct pimesh_loaded_segment *segments = calloc(info->dlpi_phnum ? info->dlpi_phnum : 1, sizeof *segments);
    if (!segments) {
        visit->failed = 1;
        return 0;
    }
    for (ElfW(Half) i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *header = &info->dlpi_phdr[i];
        segments[i] = (struct pimesh_loaded_segment){
            .type = header->p_type,
            .flags = header->p_flags,
            .virtual_address = header->p_vaddr,
            .file_size = header->p_filesz,
            .memory_size = header->p_memsz,
        };
    }
    struct pimesh_loaded_object object = {
        .name = info->dlpi_name ? info->dlpi_name : "",
        .base = info->dlpi_addr,
        .text_relocations = has_text_relocations(info),
        .segments = segments,
        .segment_count = info->dlpi_phnum,
    };
    visit->visit(visit->context, &object);
    free(segments);
    return 0;
}

int pimesh_visit_loaded_objects(pimesh_loaded_object_visitor visit, void *context) {
    struct visit state = {visit, context, 0};
    dl_iterate_phdr(visit_one, &state);
    return state.failed ? -1 : 0;
}
