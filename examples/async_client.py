"""Asynchronous client (seed example): tasks with a complete callback."""
import pygear


def oncomplete_callback(task):
    print(task.result())


c = pygear.Client()
c.add_server('localhost', 4730)
c.set_complete_fn(oncomplete_callback)

# add tasks to local queue
c.add_task('reverse', 'Hello pygear task 1!')
c.add_task('reverse', 'Hello pygear task 2!')

# background jobs will not trigger oncomplete_callback function
c.add_task_background('reverse', 'Hello pygear task 3!')

# submit to server and run tasks
c.run_tasks()
