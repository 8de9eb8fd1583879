import networkx as nx
import pytest

from openlpu.system import topology


def as_networkx(topo) -> nx.MultiGraph:
    """An independent view of the wiring, for networkx's own shortest paths and cuts."""
    graph = nx.MultiGraph()
    graph.add_nodes_from(range(topo.chips))
    graph.add_edges_from(topo.ends.tolist())
    return graph


@pytest.fixture(scope="session")
def full_scale():
    return topology.dragonfly(145)
