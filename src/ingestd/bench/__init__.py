"""`ingestd bench`: a load generator for ingestd (or any endpoint taking the same requests).

Open or closed loop, single events or batches, duplicates, end-to-end delivery timing through
a built-in receiver, coordinated-omission correction, several sender processes whose
log-linear histograms are merged. Kept free of server imports so senders start fast.
"""
