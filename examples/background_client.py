"""Non-blocking client (seed example): a background job and its status."""
import pygear

c = pygear.Client()
c.add_server('localhost', 4730)

# submit background job to server and return immediately
res = c.do_background('reverse', 'Hello pygear!')
result = res['result']  # None on success; a failed submission raises
job_handle = res['job_handle']

# check job status if needed
print(c.job_status(job_handle))
