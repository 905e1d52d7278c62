"""PyTorch's manual CUDA graph of a whole step, as its documentation captures a network
(warm-up on a side stream, then ``torch.cuda.graph``, then ``g.replay()`` per step): the
compiled suites' second PyTorch peer on CUDA. Its plain steps are PyTorch eager's."""
from . import NotOffered, Unavailable, torch_runs

#: the suites it takes part in (a graph of the others would time nothing new)
SUITES = ("compiled_chain", "compiled_mlp_step")
sync, array_to_numpy = torch_runs.sync, torch_runs.array_to_numpy
chain, mlp = torch_runs.chain, torch_runs.mlp
WARMUPS = 3


def load(device, threads):
    version = torch_runs.load(device, threads)
    if device != "cuda":
        raise Unavailable("PyTorch's CUDA graphs need a GPU")
    return version


def _graphed(step):
    """``step`` captured into one CUDA graph; each call replays it and returns its static
    outputs."""
    torch = torch_runs.torch
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(WARMUPS):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = step()

    def replay():
        graph.replay()
        return out

    return replay


def chain_compiled(shape, n_ops, device):
    return _graphed(chain(shape, n_ops, device))


def mlp_compiled(sizes, batch, optimizer, device):
    if optimizer != "sgd":  # (Adam in a graph needs capturable=True: another step)
        raise NotOffered("PyTorch's graphed step: SGD only")
    return _graphed(mlp(sizes, batch, optimizer, device))
