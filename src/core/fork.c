// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * Everything about fork() lives here.
 *
 * Registrations hold the fork guard from before they mark a range until
 * after the device has pinned it, and from before the device unpins until
 * the range is unmarked.  The atfork prepare handler closes the gate and
 * waits for every thread inside to leave, so fork() never sees a range
 * marked but not pinned, or unpinned but still marked; threads arriving
 * while a fork waits queue behind it, so registrations cannot starve a
 * fork.  Nesting is counted per thread: a thread already inside never waits
 * behind a fork (that would deadlock).
 *
 * With the gate closed, prepare also takes the registry lock, unmarks the
 * registrations whose unmarking was deferred (and re-marks the ones pinned
 * again meanwhile), so the child sees exactly the live registrations, and
 * copies the partially registered pages (edge_pages.h) for the child.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/mman.h>

#include "fork.h"
#include "once.h"
#include "registry.h"
#include "vm.h"

/*
 * A readers-writer gate built from two counters, a mutex and two condition
 * variables rather than pthread_rwlock_t: the forking thread holds the
 * gate's mutex across fork() and unlocks it in the child, which glibc
 * allows for a default mutex but not for a rwlock (its unlock path depends
 * on the owner's TID, which differs in the child).
 *
 * Entering and leaving touch only the calling thread's counter while no
 * fork waits: a registration that makes no system call (a parked range
 * revived) would otherwise spend its time passing the mutex, or one shared
 * counter's cache line, between threads.  Each thread claims a record
 * (struct fork_thread) on its first entry; records are never freed, only
 * released when their thread exits (a pthread key's destructor) for the
 * next new thread to claim, so prepare can walk the list without a lock.
 * A thread that cannot get a record of its own shares a static one (the
 * counter counts).  The counters are sequentially consistent, Dekker
 * style: a thread raises its `inside` and then reads `forks_waiting`,
 * prepare raises `forks_waiting` and then reads every `inside`, so at
 * least one of them sees the other.
 */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t can_enter;	/* no fork waiting */
	pthread_cond_t drained;		/* no registration in flight */
} gate = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.can_enter = PTHREAD_COND_INITIALIZER,
	.drained = PTHREAD_COND_INITIALIZER,
};
/* Threads without a record of their own (out of memory) share this one. */
static struct fork_thread shared_record = { .in_use = true };
/* The counters and the nesting depth: read by the inline fast path in fork.h. */
struct fork_gate_counters fork_gate = { .threads = &shared_record };
SP_THREAD_LOCAL unsigned int fork_guard_depth;
SP_THREAD_LOCAL struct fork_thread *fork_self;
struct once fork_once = ONCE_INIT;
static pthread_key_t record_key;
static bool have_key;

/* Consumers' child resets; written under gate.lock, read in the child. */
static void (*child_resets[FORK_MAX_CHILD_RESETS])(void);
static unsigned int nr_child_resets;
static void (*prepare_hook)(void);

static void prepare(void)
{
	pthread_mutex_lock(&gate.lock);
	atomic_fetch_add(&fork_gate.forks_waiting, 1);
	for (struct fork_thread *t = atomic_load(&fork_gate.threads); t; t = t->next)
		while (atomic_load(&t->inside))
			pthread_cond_wait(&gate.drained, &gate.lock);
	/* gate.lock and forks_waiting stay until the fork is done: nobody enters. */
	registry_lock();
	registry_before_fork_locked();
	vm_note_cow_child();
	if (prepare_hook)
		prepare_hook();
	registry_snapshot_edges();
}

static void parent(void)
{
	registry_release_edges();
	registry_unlock();
	atomic_fetch_sub(&fork_gate.forks_waiting, 1);
	pthread_cond_broadcast(&gate.can_enter);
	pthread_mutex_unlock(&gate.lock);
}

/*
 * The child owns no registration: it gets unlocked locks, an empty registry,
 * and the unregistered bytes of partially registered pages back.  Only the
 * forking thread exists here, and it holds both locks.
 */
static void child(void)
{
	pthread_cond_init(&gate.can_enter, NULL);
	pthread_cond_init(&gate.drained, NULL);
	/* The other threads' records are free again: those threads are not here. */
	for (struct fork_thread *t = atomic_load(&fork_gate.threads); t; t = t->next) {
		atomic_store(&t->inside, 0);
		if (t != fork_self && t != &shared_record)
			atomic_store(&t->in_use, false);
	}
	atomic_store(&fork_gate.forks_waiting, 0);
	fork_guard_depth = 0;
	registry_reset_in_child();
	registry_unlock();
	for (unsigned int i = 0; i < nr_child_resets; i++)
		child_resets[i]();
	pthread_mutex_unlock(&gate.lock);
}

/* A thread exits: its record is free for the next new thread. */
static void release_record(void *p)
{
	struct fork_thread *t = p;

	fork_self = NULL;
	if (t != &shared_record)
		atomic_store(&t->in_use, false);
}

void fork_init_once(void)
{
	have_key = !pthread_key_create(&record_key, release_record);
	pthread_atfork(prepare, parent, child);
}

/*
 * Records for the first threads; then a page of them at a time.  Off the
 * malloc heap: an application may register a heap buffer sharing a page
 * with them, and the child's handler could not read them then.  (The
 * static ones also keep a call's first entry from mapping anything.)
 */
#define STATIC_RECORDS 64
static struct fork_thread static_records[STATIC_RECORDS];
static atomic_bool static_used;

/* A batch of records, the first one claimed, all in the list. */
static struct fork_thread *new_records(void)
{
	size_t n = 4096 / sizeof(struct fork_thread);
	struct fork_thread *r = static_records;

	if (!atomic_exchange(&static_used, true))
		n = STATIC_RECORDS;
	else if ((r = mmap(NULL, n * sizeof(*r), PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)) == MAP_FAILED)
		return NULL;
	for (size_t i = n; i-- > 0;) {
		atomic_init(&r[i].inside, 0);
		atomic_init(&r[i].in_use, i == 0);
		r[i].next = atomic_load(&fork_gate.threads);
		while (!atomic_compare_exchange_weak(&fork_gate.threads, &r[i].next, &r[i]))
			;
	}
	return r;
}

/* This thread's first entry: claim a free record, or make one. */
struct fork_thread *fork_thread_attach(void)
{
	struct fork_thread *t;

	for (t = atomic_load(&fork_gate.threads); t; t = t->next) {
		bool free_ = false;

		if (atomic_compare_exchange_strong(&t->in_use, &free_, true))
			break;
	}
	if (!t && have_key)
		t = new_records();
	/* Without a key nothing would release it: share the static one. */
	if (!t || !have_key || pthread_setspecific(record_key, t)) {
		if (t)
			atomic_store(&t->in_use, false);
		t = &shared_record;
	}
	fork_self = t;
	return t;
}

int fork_on_child(void (*reset)(void))
{
	int ret = 0;

	fork_init();
	pthread_mutex_lock(&gate.lock);
	if (nr_child_resets < FORK_MAX_CHILD_RESETS)
		child_resets[nr_child_resets++] = reset;
	else
		ret = -ENOSPC;
	pthread_mutex_unlock(&gate.lock);
	return ret;
}

/* The last thread out of the gate wakes the fork waiting for it. */
void fork_guard_leave_slow(void)
{
	/* Under the mutex: prepare is either before its check of this
	 * thread's `inside` (and sees 0) or waiting (and gets the signal). */
	pthread_mutex_lock(&gate.lock);
	pthread_cond_broadcast(&gate.drained);
	pthread_mutex_unlock(&gate.lock);
}

/* A fork is waiting: step back out and queue behind it, then enter. */
void fork_guard_wait(void)
{
	for (;;) {
		fork_guard_leave();
		pthread_mutex_lock(&gate.lock);
		while (atomic_load(&fork_gate.forks_waiting))
			pthread_cond_wait(&gate.can_enter, &gate.lock);
		pthread_mutex_unlock(&gate.lock);
		atomic_fetch_add(&fork_self->inside, 1);
		if (!atomic_load(&fork_gate.forks_waiting))
			return;
	}
}

int fork_on_prepare(void (*fn)(void))
{
	fork_init();
	pthread_mutex_lock(&gate.lock);
	prepare_hook = fn;
	pthread_mutex_unlock(&gate.lock);
	return 0;
}
