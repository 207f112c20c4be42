/* Reference worker for pygear's benchmarks: libgearman used directly.
 *
 *   worker FUNCTION HOST PORT
 *
 * Serves FUNCTION as an echo (the result is the workload) until killed.
 */
#include <libgearman-1.0/gearman.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *echo(gearman_job_st *job, void *context, size_t *result_size,
                  gearman_return_t *ret_ptr)
{
  (void)context;
  size_t size = gearman_job_workload_size(job);
  void *result = malloc(size ? size : 1);
  if (size)
    memcpy(result, gearman_job_workload(job), size);
  *result_size = size;
  *ret_ptr = GEARMAN_SUCCESS;
  return result;
}

int main(int argc, char **argv)
{
  if (argc != 4) {
    fprintf(stderr, "usage: %s FUNCTION HOST PORT\n", argv[0]);
    return 2;
  }
  gearman_worker_st *worker = gearman_worker_create(NULL);
  if (worker == NULL
      || gearman_worker_add_server(worker, argv[2], (in_port_t)atoi(argv[3])) != GEARMAN_SUCCESS
      || gearman_worker_add_function(worker, argv[1], 0, echo, NULL) != GEARMAN_SUCCESS) {
    fprintf(stderr, "cannot set up the worker\n");
    return 1;
  }
  for (;;) {
    gearman_return_t rc = gearman_worker_work(worker);
    if (rc != GEARMAN_SUCCESS && rc != GEARMAN_IO_WAIT && rc != GEARMAN_NO_JOBS
        && rc != GEARMAN_TIMEOUT) {
      fprintf(stderr, "work: %s\n", gearman_worker_error(worker));
      if (rc == GEARMAN_NO_REGISTERED_FUNCTIONS || rc == GEARMAN_INVALID_ARGUMENT)
        return 1;
    }
  }
}
