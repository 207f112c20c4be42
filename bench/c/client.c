/* Reference client for pygear's benchmarks: libgearman used directly.
 *
 *   client MODE FUNCTION SIZE COUNT HOST PORT
 *
 * MODE is do (sequential gearman_client_do), tasks (COUNT add_task, one
 * run_tasks) or background (sequential gearman_client_do_background).
 * Prints the elapsed seconds of the timed part on stdout; the connection
 * is made (by an echo) before the clock starts.  Exit status 0 only when
 * every job succeeded and every echoed result has SIZE bytes.
 */
#include <libgearman-1.0/gearman.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static size_t expected_size;
static long completed, bad;

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static gearman_return_t on_complete(gearman_task_st *task)
{
  if (gearman_task_data_size(task) == expected_size)
    completed++;
  else
    bad++;
  return GEARMAN_SUCCESS;
}

static gearman_return_t on_fail(gearman_task_st *task)
{
  (void)task;
  bad++;
  return GEARMAN_SUCCESS;
}

int main(int argc, char **argv)
{
  if (argc != 7) {
    fprintf(stderr, "usage: %s do|tasks|background FUNCTION SIZE COUNT HOST PORT\n", argv[0]);
    return 2;
  }
  const char *mode = argv[1], *fn = argv[2], *host = argv[5];
  size_t size = (size_t)strtoull(argv[3], NULL, 10);
  long count = strtol(argv[4], NULL, 10);
  in_port_t port = (in_port_t)atoi(argv[6]);
  expected_size = size;

  char *payload = malloc(size ? size : 1);
  for (size_t i = 0; i < size; i++)
    payload[i] = (char)('a' + i % 26);

  gearman_client_st *client = gearman_client_create(NULL);
  if (client == NULL || gearman_client_add_server(client, host, port) != GEARMAN_SUCCESS) {
    fprintf(stderr, "cannot set up the client\n");
    return 1;
  }
  if (gearman_client_echo(client, "ping", 4) != GEARMAN_SUCCESS) {
    fprintf(stderr, "echo failed: %s\n", gearman_client_error(client));
    return 1;
  }

  double start = now();
  if (strcmp(mode, "do") == 0) {
    for (long i = 0; i < count; i++) {
      size_t result_size;
      gearman_return_t rc;
      void *result = gearman_client_do(client, fn, NULL, payload, size, &result_size, &rc);
      if (rc != GEARMAN_SUCCESS || result_size != size) {
        fprintf(stderr, "do failed: %s\n", gearman_client_error(client));
        return 1;
      }
      free(result);
    }
  } else if (strcmp(mode, "background") == 0) {
    for (long i = 0; i < count; i++) {
      gearman_job_handle_t handle;
      gearman_return_t rc = gearman_client_do_background(client, fn, NULL, payload, size, handle);
      if (rc != GEARMAN_SUCCESS) {
        fprintf(stderr, "do_background failed: %s\n", gearman_client_error(client));
        return 1;
      }
    }
  } else if (strcmp(mode, "tasks") == 0) {
    gearman_client_set_complete_fn(client, on_complete);
    gearman_client_set_fail_fn(client, on_fail);
    for (long i = 0; i < count; i++) {
      gearman_return_t rc;
      if (gearman_client_add_task(client, NULL, NULL, fn, NULL, payload, size, &rc) == NULL) {
        fprintf(stderr, "add_task failed: %s\n", gearman_client_error(client));
        return 1;
      }
    }
    gearman_return_t rc = gearman_client_run_tasks(client);
    if (rc != GEARMAN_SUCCESS || completed != count || bad) {
      fprintf(stderr, "run_tasks: %s, %ld completed, %ld bad\n",
              gearman_strerror(rc), completed, bad);
      return 1;
    }
  } else {
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
  }
  double elapsed = now() - start;
  printf("%.6f\n", elapsed);
  gearman_client_free(client);
  free(payload);
  return 0;
}
