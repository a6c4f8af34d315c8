/* tests/test_dlclose.c — libweft.so loaded with dlopen and unloaded with
 * dlclose while threads that used it are still alive.
 *
 * Why: a thread outside the runtimes that spawns or frees tasks gets a block
 * cache, released by a pthread key destructor inside libweft when the thread
 * exits (kernel/pool.cpp). Had dlclose unmapped the library, those threads
 * would call that destructor at an address with no code when they exit
 * (SIGSEGV). libweft.so is linked -z nodelete (CMakeLists.txt), so they exit
 * cleanly. Loaded the way ctypes, Go's plugin loaders and Rust's libloading
 * load it.
 *
 * Usage: test_dlclose path/to/libweft.so */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "weft/weft.h"

typedef void (*config_init_fn)(weft_runtime_config*);
typedef int (*runtime_new_fn)(const weft_runtime_config*, weft_runtime**);
typedef int (*runtime_free_fn)(weft_runtime*);
typedef int (*spawn_fn)(weft_runtime*, const weft_task_desc*, weft_join**);
typedef int (*join_wait_fn)(weft_join*, int64_t);
typedef void (*join_free_fn)(weft_join*);

static runtime_new_fn runtime_new;
static spawn_fn spawn;
static join_wait_fn join_wait;
static join_free_fn join_free;
static weft_runtime* rt;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int spawned = 0;   /* threads done with the library */
static int unloaded = 0;  /* main has called dlclose */

static int poll_ready(void* data, weft_context* cx, void* out) {
    (void)data;
    (void)cx;
    (void)out;
    return WEFT_READY;
}

static void* user_thread(void* arg) {
    (void)arg;
    /* Spawns from this thread (a pooled alloc here: the thread's cache) and
     * frees the handles here (pooled frees). */
    for (int i = 0; i < 300; i++) {
        weft_task_desc d = {sizeof d, poll_ready, NULL, NULL, 0};
        weft_join* j = NULL;
        if (spawn(rt, &d, &j) != 0 || join_wait(j, -1) != 0) {
            fprintf(stderr, "FAIL: spawn or join\n");
            exit(1);
        }
        join_free(j);
    }
    pthread_mutex_lock(&mu);
    spawned++;
    pthread_cond_broadcast(&cv);
    while (!unloaded) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    return NULL; /* the key destructors run now, after the dlclose */
}

int main(int argc, char** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_dlclose libweft.so\n");
        return 2;
    }
    void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "FAIL: dlopen: %s\n", dlerror());
        return 1;
    }
    config_init_fn config_init = (config_init_fn)dlsym(lib, "weft_runtime_config_init");
    runtime_new = (runtime_new_fn)dlsym(lib, "weft_runtime_new");
    runtime_free_fn runtime_free = (runtime_free_fn)dlsym(lib, "weft_runtime_free");
    spawn = (spawn_fn)dlsym(lib, "weft_spawn");
    join_wait = (join_wait_fn)dlsym(lib, "weft_join_wait");
    join_free = (join_free_fn)dlsym(lib, "weft_join_free");
    if (!config_init || !runtime_new || !runtime_free || !spawn || !join_wait || !join_free) {
        fprintf(stderr, "FAIL: dlsym\n");
        return 1;
    }
    weft_runtime_config cfg;
    config_init(&cfg);
    cfg.workers = 2;
    if (runtime_new(&cfg, &rt) != 0) {
        fprintf(stderr, "FAIL: weft_runtime_new\n");
        return 1;
    }
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, user_thread, NULL);
    pthread_mutex_lock(&mu);
    while (spawned < 2) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    if (runtime_free(rt) != 0) {
        fprintf(stderr, "FAIL: weft_runtime_free\n");
        return 1;
    }
    if (dlclose(lib) != 0) {
        fprintf(stderr, "FAIL: dlclose: %s\n", dlerror());
        return 1;
    }
    pthread_mutex_lock(&mu);
    unloaded = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    printf("ok: threads that used libweft.so exited after its dlclose\n");
    return 0;
}
