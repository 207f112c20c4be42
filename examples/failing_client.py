"""Failure handling, client side (seed example): the exception callback."""
import pygear


def onexn_callback(task):
    print(task.result())


c = pygear.Client()
c.add_server('localhost', 4730)
c.set_exception_fn(onexn_callback)
c.add_task('reverse', 'Hello python!')
c.run_tasks()
