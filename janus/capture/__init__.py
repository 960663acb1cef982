"""Reading captures and turning them into the dataset triple: pcap/pcapng reading, decoding,
flow assembly, flow features, the extract step, and the capture writer used by the synthetic
generator and the tests.
"""
