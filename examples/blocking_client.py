"""Blocking client (seed example)."""
import pygear

c = pygear.Client()
c.add_server('localhost', 4730)

# submit foreground job to server and wait for the result
try:
    c.set_timeout(5000)  # wait at most 5 seconds
    result = c.do('reverse', 'Hello pygear!')
    print(result)
except pygear.TIMEOUT:
    print('Wait for too long!')
