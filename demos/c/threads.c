/* threads: starts worker threads from start_workers. By default they are detached and wait
 * forever for work that never comes: still alive when the process exits (a thread leak).
 * With --join they finish their work and are joined before exit (the fixed twin).
 *
 * Usage: threads [--join] [N]   (N threads, default 8) */
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static sem_t started;
static sem_t work;

static void *worker(void *arg) {
    (void)arg;
    sem_post(&started);
    sem_wait(&work); /* detached: nobody ever posts work */
    return NULL;
}

/* Starts n workers; returns their ids. */
static pthread_t *start_workers(int n, int join) {
    pthread_t *ids = calloc((size_t)n, sizeof *ids);
    for (int i = 0; i < n; i++) {
        if (pthread_create(&ids[i], NULL, worker, NULL) != 0) { /* tracer-demo: leak site */
            perror("pthread_create");
            exit(1);
        }
        if (!join)
            pthread_detach(ids[i]);
    }
    return ids;
}

int main(int argc, char **argv) {
    int join = 0, n = 8;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--join") == 0)
            join = 1;
        else
            n = atoi(argv[i]);
    }
    sem_init(&started, 0, 0);
    sem_init(&work, 0, 0);
    pthread_t *ids = start_workers(n, join);
    for (int i = 0; i < n; i++)
        sem_wait(&started);
    if (join) {
        for (int i = 0; i < n; i++)
            sem_post(&work);
        for (int i = 0; i < n; i++)
            pthread_join(ids[i], NULL);
    }
    printf("%d threads started, %s\n", n, join ? "joined" : "left running");
    free(ids);
    return 0;
}
