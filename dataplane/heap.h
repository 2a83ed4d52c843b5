// Process-wide glibc malloc settings for a data plane process; call once at the start of main,
// before any thread is created.
#pragma once

#include <string>

namespace airlock::dp {

// Keeps the memory a policy build frees in the process for the next build, instead of handing
// it back to the kernel. rte_acl_build takes its working memory from malloc in 8 MiB blocks
// (about 0.5 GiB for 10k peers / 100k rules) and frees it at the end; by default glibc maps such
// blocks with mmap and unmaps them on free, so every policy swap page-faults all of it in again,
// which was a third of a swap's build time here. Settings: blocks up to 32 MiB (glibc's limit
// for this setting) come from the heap, up to 1 GiB of free heap is kept, and every thread
// shares the main arena, so the compile thread (a fresh thread per push) finds what the last
// one freed. Peak memory stays the same; the process simply does not shrink between swaps. The
// fast path does not allocate, so the shared arena costs it nothing. Returns false and sets
// *error if glibc refuses a setting.
bool retain_heap_between_policy_builds(std::string* error);

}  // namespace airlock::dp
