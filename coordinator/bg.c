/*  bg - see bg.h */
#define _GNU_SOURCE
#include "coordinator/bg.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct lmp_bg {
    pthread_t           thr;
    pthread_mutex_t     mu;
    pthread_cond_t      cv;
    bool                started, stop;
    struct lmp_bg_item *todo, *todo_tail; /* posted, not started */
    struct lmp_bg_item *running;          /* being worked on, or NULL */
    struct lmp_bg_item *done, *done_tail; /* worked on, not taken back */
    size_t              n_pending;        /* posted and not taken */
    int                 fd[2];            /* one byte in the pipe per done item */
};

static void push(struct lmp_bg_item **head, struct lmp_bg_item **tail, struct lmp_bg_item *it) {
    it->next = NULL;
    if (*tail)
        (*tail)->next = it;
    else
        *head = it;
    *tail = it;
}

static struct lmp_bg_item *pop(struct lmp_bg_item **head, struct lmp_bg_item **tail) {
    struct lmp_bg_item *it = *head;
    if (it == NULL) return NULL;
    *head = it->next;
    if (*head == NULL) *tail = NULL;
    it->next = NULL;
    return it;
}

static void *bg_main(void *arg) {
    struct lmp_bg *bg = arg;
    pthread_mutex_lock(&bg->mu);
    for (;;) {
        while (!bg->stop && bg->todo == NULL) pthread_cond_wait(&bg->cv, &bg->mu);
        if (bg->stop) break;
        struct lmp_bg_item *it = pop(&bg->todo, &bg->todo_tail);
        bg->running            = it;
        pthread_mutex_unlock(&bg->mu);
        it->work(it);
        pthread_mutex_lock(&bg->mu);
        bg->running = NULL;
        push(&bg->done, &bg->done_tail, it);
        const char one = 1;
        while (write(bg->fd[1], &one, 1) < 0 && errno == EINTR) {
        }
    }
    pthread_mutex_unlock(&bg->mu);
    return NULL;
}

enum lmp_status lmp_bg_new(struct lmp_bg **out, struct lmp_err *err) {
    assert(out);
    *out              = NULL;
    struct lmp_bg *bg = calloc(1, sizeof(*bg));
    if (bg == NULL) return lmp_err_set(err, LMP_ENOMEM, "out of memory");
    bg->fd[0] = bg->fd[1] = -1;
    pthread_mutex_init(&bg->mu, NULL);
    pthread_cond_init(&bg->cv, NULL);
    if (pipe2(bg->fd, O_CLOEXEC | O_NONBLOCK) != 0) {
        const enum lmp_status st = lmp_err_set(err, LMP_EIO, "pipe: %s", strerror(errno));
        lmp_bg_destroy(&bg, NULL);
        return st;
    }
    if (pthread_create(&bg->thr, NULL, bg_main, bg) != 0) {
        lmp_bg_destroy(&bg, NULL);
        return lmp_err_set(err, LMP_EIO, "cannot start the coordinator's background thread");
    }
    bg->started = true;
    *out        = bg;
    return LMP_OK;
}

void lmp_bg_destroy(struct lmp_bg **bg_p, void (*drop)(struct lmp_bg_item *it)) {
    assert(bg_p);
    struct lmp_bg *bg = *bg_p;
    if (bg == NULL) return;
    if (bg->started) {
        pthread_mutex_lock(&bg->mu);
        bg->stop = true;
        pthread_cond_signal(&bg->cv);
        pthread_mutex_unlock(&bg->mu);
        pthread_join(bg->thr, NULL); /* after the running item, if any */
    }
    struct lmp_bg_item *it;
    while ((it = pop(&bg->done, &bg->done_tail)) != NULL)
        if (drop) drop(it);
    while ((it = pop(&bg->todo, &bg->todo_tail)) != NULL)
        if (drop) drop(it);
    for (int k = 0; k < 2; k++)
        if (bg->fd[k] >= 0) close(bg->fd[k]);
    pthread_cond_destroy(&bg->cv);
    pthread_mutex_destroy(&bg->mu);
    free(bg);
    *bg_p = NULL;
}

void lmp_bg_post(struct lmp_bg *bg, struct lmp_bg_item *it) {
    assert(bg && it && it->work);
    pthread_mutex_lock(&bg->mu);
    push(&bg->todo, &bg->todo_tail, it);
    bg->n_pending++;
    pthread_cond_signal(&bg->cv);
    pthread_mutex_unlock(&bg->mu);
}

int lmp_bg_fd(const struct lmp_bg *bg) {
    assert(bg);
    return bg->fd[0];
}

struct lmp_bg_item *lmp_bg_take(struct lmp_bg *bg) {
    assert(bg);
    pthread_mutex_lock(&bg->mu);
    struct lmp_bg_item *it = pop(&bg->done, &bg->done_tail);
    if (it) {
        char b;
        while (read(bg->fd[0], &b, 1) < 0 && errno == EINTR) {
        }
        bg->n_pending--;
    }
    pthread_mutex_unlock(&bg->mu);
    return it;
}

size_t lmp_bg_n_pending(const struct lmp_bg *bg) {
    assert(bg);
    pthread_mutex_t *mu = (pthread_mutex_t *)&bg->mu;
    pthread_mutex_lock(mu);
    const size_t n = bg->n_pending;
    pthread_mutex_unlock(mu);
    return n;
}
