// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * dlsym()/dlvsym() interposition, for programs that dlopen("libibverbs.so.1")
 * and take its functions from the handle (NCCL, UCX-style loaders): a lookup
 * through a handle searches that object and its dependencies only, never the
 * global scope where LD_PRELOAD put the shim, so those programs would call
 * libibverbs directly.  Here a lookup through a real handle that finds one of
 * the libibverbs functions the shim wraps returns the shim's function
 * instead (shim_redirect()); every other lookup returns what libc returns.
 *
 * Two traps, and how they are handled:
 *
 * 1. glibc's dlsym(RTLD_NEXT, ...) and dlsym(RTLD_DEFAULT, ...) depend on
 *    the CALLER (the object whose return address dlsym sees): "next after
 *    the caller".  A C wrapper calling the real dlsym would make every
 *    RTLD_NEXT lookup of every other interposer start after the shim (and
 *    some of them loop forever).  So the exported dlsym/dlvsym are a few
 *    instructions of assembly that JUMP (not call) to libc's function for
 *    the two pseudo-handles, leaving the caller's return address in place;
 *    only lookups through real handles, where glibc does not use the
 *    caller, go through C.  x86-64 only: elsewhere nothing is interposed
 *    and such loaders are not covered (documented in the README of the
 *    shim, docs/preload.md).
 *
 * 2. The shim cannot find libc's dlsym by name: "dlsym" and "dlvsym" resolve
 *    to the shim itself, first in the global scope.  So libc's (and, before
 *    glibc 2.34, libdl's) dynamic symbol table is read directly (the
 *    dl_iterate_phdr() program headers, DT_SYMTAB/DT_STRTAB/DT_VERSYM/
 *    DT_VERDEF, symbol count from DT_GNU_HASH or DT_HASH), without
 *    allocating, at load time and again lazily if a lookup comes first.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <stdint.h>
#include <string.h>

#include "preload.h"

void *(*shim_real_dlvsym)(void *handle, const char *name, const char *version);

/* libc's functions by version, read by the trampolines below. */
SHIM_HIDDEN void *shim_slot_dlsym_2_34, *shim_slot_dlsym_2_2_5;
SHIM_HIDDEN void *shim_slot_dlvsym_2_34, *shim_slot_dlvsym_2_2_5;

struct want {
	const char *name, *version;
	void **slot;
};

static const struct want wanted[] = {
	{ "dlsym", "GLIBC_2.34", &shim_slot_dlsym_2_34 },
	{ "dlsym", "GLIBC_2.2.5", &shim_slot_dlsym_2_2_5 },
	{ "dlvsym", "GLIBC_2.34", &shim_slot_dlvsym_2_34 },
	{ "dlvsym", "GLIBC_2.2.5", &shim_slot_dlvsym_2_2_5 },
};

static size_t gnu_hash_nsyms(const uint32_t *gh)
{
	uint32_t nbuckets = gh[0], symoffset = gh[1], bloom_size = gh[2], max = 0;
	const uint32_t *buckets = gh + 4 + bloom_size * (sizeof(ElfW(Addr)) / 4);
	const uint32_t *chain = buckets + nbuckets;

	for (uint32_t i = 0; i < nbuckets; i++)
		if (buckets[i] > max)
			max = buckets[i];
	if (max < symoffset)
		return symoffset;
	while (!(chain[max - symoffset] & 1))
		max++;
	return (size_t)max + 1;
}

static const char *version_name(const ElfW(Verdef) *vd, const char *strtab, unsigned int ndx)
{
	while (vd) {
		if (vd->vd_ndx == ndx) {
			const ElfW(Verdaux) *aux = (const void *)((const char *)vd + vd->vd_aux);

			return strtab + aux->vda_name;
		}
		if (!vd->vd_next)
			break;
		vd = (const void *)((const char *)vd + vd->vd_next);
	}
	return NULL;
}

static int scan_object(struct dl_phdr_info *info, size_t size, void *data)
{
	const char *base = strrchr(info->dlpi_name, '/');
	const ElfW(Dyn) *dyn = NULL;
	const ElfW(Sym) *symtab = NULL;
	const ElfW(Half) *versym = NULL;
	const ElfW(Verdef) *verdef = NULL;
	const uint32_t *gnu_hash = NULL, *hash = NULL;
	const char *strtab = NULL;
	ElfW(Addr) b = info->dlpi_addr;
	size_t nsyms;

	(void)size;
	(void)data;
	base = base ? base + 1 : info->dlpi_name;
	if (strcmp(base, "libc.so.6") && strcmp(base, "libdl.so.2"))
		return 0;
	for (int i = 0; i < info->dlpi_phnum; i++)
		if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
			dyn = (const void *)(b + info->dlpi_phdr[i].p_vaddr);
	if (!dyn)
		return 0;
	/* ld.so relocates these entries in place on most architectures
	 * (not where the dynamic section is read-only): accept both. */
#define DPTR(v) ((const void *)((v) < b ? b + (v) : (v)))
	for (; dyn->d_tag != DT_NULL; dyn++) {
		switch (dyn->d_tag) {
		case DT_SYMTAB:
			symtab = DPTR(dyn->d_un.d_ptr);
			break;
		case DT_STRTAB:
			strtab = DPTR(dyn->d_un.d_ptr);
			break;
		case DT_VERSYM:
			versym = DPTR(dyn->d_un.d_ptr);
			break;
		case DT_VERDEF:
			verdef = DPTR(dyn->d_un.d_ptr);
			break;
		case DT_GNU_HASH:
			gnu_hash = DPTR(dyn->d_un.d_ptr);
			break;
		case DT_HASH:
			hash = DPTR(dyn->d_un.d_ptr);
			break;
		}
	}
#undef DPTR
	if (!symtab || !strtab || !versym || !verdef || (!gnu_hash && !hash))
		return 0;
	nsyms = gnu_hash ? gnu_hash_nsyms(gnu_hash) : hash[1];
	for (size_t i = 1; i < nsyms; i++) {
		const ElfW(Sym) *s = &symtab[i];
		const char *name = strtab + s->st_name, *ver;

		if (s->st_shndx == SHN_UNDEF || (s->st_info & 0xf) != STT_FUNC ||
		    strncmp(name, "dl", 2))
			continue;
		ver = version_name(verdef, strtab, versym[i] & 0x7fff);
		if (!ver)
			continue;
		for (size_t w = 0; w < sizeof(wanted) / sizeof(wanted[0]); w++)
			if (!*wanted[w].slot && !strcmp(name, wanted[w].name) &&
			    !strcmp(ver, wanted[w].version))
				*wanted[w].slot = (void *)(b + s->st_value);
	}
	return 0;
}

SHIM_HIDDEN void shim_dl_resolve(void)
{
	if (shim_real_dlvsym)
		return;
	dl_iterate_phdr(scan_object, NULL);
	if (!shim_slot_dlvsym_2_34)
		shim_slot_dlvsym_2_34 = shim_slot_dlvsym_2_2_5;
	if (!shim_slot_dlsym_2_34)
		shim_slot_dlsym_2_34 = shim_slot_dlsym_2_2_5;
#if !defined(__x86_64__)
	/* Nothing interposed there: the name is libc's own function. */
	if (!shim_slot_dlvsym_2_34)
		shim_slot_dlvsym_2_34 = (void *)dlvsym;
#endif
	shim_real_dlvsym = (void *(*)(void *, const char *, const char *))shim_slot_dlvsym_2_34;
}

#if defined(__x86_64__)
/* Lookups through real handles (the trampolines jump here). */
SHIM_HIDDEN void *shim_dlsym_handle(void *handle, const char *name, void **slot);
SHIM_HIDDEN void *shim_dlvsym_handle(void *handle, const char *name, const char *version,
				     void **slot);

SHIM_HIDDEN void *shim_dlsym_handle(void *handle, const char *name, void **slot)
{
	void *(*real)(void *, const char *);

	shim_dl_resolve();
	real = (void *(*)(void *, const char *))*slot;
	if (!real)
		return NULL;
	return shim_redirect(name, NULL, real(handle, name));
}

SHIM_HIDDEN void *shim_dlvsym_handle(void *handle, const char *name, const char *version,
				     void **slot)
{
	void *(*real)(void *, const char *, const char *);

	shim_dl_resolve();
	real = (void *(*)(void *, const char *, const char *))*slot;
	if (!real)
		return NULL;
	return shim_redirect(name, version, real(handle, name, version));
}

/*
 * Trampoline: RTLD_DEFAULT (0) and RTLD_NEXT (-1) jump to libc with the
 * caller's return address untouched; real handles tail-jump to the C
 * handler with the slot as the extra argument (@slotreg: the register after
 * the function's own arguments).  The first call before the constructor
 * resolves the slots, keeping the argument registers.
 */
#define TRAMPOLINE(tramp, slot, handler, slotreg, sym)                              \
	__asm__(".text\n"                                                           \
		".globl " #tramp "\n"                                               \
		".type " #tramp ", @function\n"                                     \
		".p2align 4\n" #tramp ":\n"                                         \
		"	test %rdi, %rdi\n"                                          \
		"	jz 1f\n"                                                    \
		"	cmp $-1, %rdi\n"                                            \
		"	je 1f\n"                                                    \
		"	lea " #slot "(%rip), " slotreg "\n"                         \
		"	jmp " #handler "\n"                                         \
		"1:	mov " #slot "(%rip), %rax\n"                                \
		"	test %rax, %rax\n"                                          \
		"	jz 2f\n"                                                    \
		"	jmp *%rax\n"                                                \
		"2:	push %rdi\n"                                                \
		"	push %rsi\n"                                                \
		"	push %rdx\n"                                                \
		"	call shim_dl_resolve\n"                                     \
		"	pop %rdx\n"                                                 \
		"	pop %rsi\n"                                                 \
		"	pop %rdi\n"                                                 \
		"	mov " #slot "(%rip), %rax\n"                                \
		"	test %rax, %rax\n"                                          \
		"	jz 3f\n"                                                    \
		"	jmp *%rax\n"                                                \
		"3:	xor %eax, %eax\n"                                           \
		"	ret\n"                                                      \
		".size " #tramp ", .-" #tramp "\n"                                  \
		".symver " #tramp ", " sym "\n")

TRAMPOLINE(shim_dlsym_2_34, shim_slot_dlsym_2_34, shim_dlsym_handle, "%rdx", "dlsym@@GLIBC_2.34");
TRAMPOLINE(shim_dlsym_2_2_5, shim_slot_dlsym_2_2_5, shim_dlsym_handle, "%rdx",
	   "dlsym@GLIBC_2.2.5");
TRAMPOLINE(shim_dlvsym_2_34, shim_slot_dlvsym_2_34, shim_dlvsym_handle, "%rcx",
	   "dlvsym@@GLIBC_2.34");
TRAMPOLINE(shim_dlvsym_2_2_5, shim_slot_dlvsym_2_2_5, shim_dlvsym_handle, "%rcx",
	   "dlvsym@GLIBC_2.2.5");
#endif
