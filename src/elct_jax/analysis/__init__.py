"""Layer 7, analysis: band structures, DOS and plots (``bands``), errors against DFT references
(``evaluate``, ``dft_check``) and learning curves recorded during training (``curve``)."""
