import threading, pytest
@pytest.fixture(autouse=True)
def _threads(request):
    yield
    extra = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if extra:
        print(f"\nTHREADS after {request.node.nodeid}: {extra}")
