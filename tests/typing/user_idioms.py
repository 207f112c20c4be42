"""A user's file, written with the README's idioms: mypy --strict must pass."""
import pygear


def reverse(job: pygear.Job) -> str:
    workload = job.workload()
    assert isinstance(workload, str)
    return workload[::-1]


def serve_once() -> None:
    w = pygear.Worker()
    w.add_server("localhost", 4730)
    w.add_function("reverse", 0, reverse)
    try:
        w.set_timeout(1000)
        w.work()
    except pygear.TIMEOUT:
        pass
    w.close()


def submit() -> None:
    c = pygear.Client("localhost:4730")
    try:
        c.set_timeout(5000)
        print(c.do("reverse", "Hello pygear!"))
    except pygear.TIMEOUT:
        print("Wait for too long!")
    except (pygear.WORK_FAIL, pygear.WORK_EXCEPTION) as exc:
        print(exc.payload)
    except pygear.COULD_NOT_CONNECT as exc:
        print(exc.code, exc.name, exc.detail)
    res = c.do_background("reverse", "Hello pygear!")
    print(c.job_status(res["job_handle"], server=res["server"]))

    def oncomplete(task: pygear.Task) -> None:
        print(task.result(), task.job_handle(), task.server())

    c.set_complete_fn(oncomplete)
    c.add_task("reverse", "Hello pygear task 1!")
    c.run_tasks()
    with pygear.Admin("localhost", 4730, timeout=5) as admin:
        for row in admin.status():
            print(row["function"], row["total"])
