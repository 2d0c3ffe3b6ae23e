"""Layer 3, the network (DeepH-2's ELCT): edge-frame Wigner-D (``so3``), SO(2) convolutions (``so2``), layers,
attention vertex update, Wigner-Eckart head and the model that maps a graph to Hamiltonian blocks (``model``)."""
