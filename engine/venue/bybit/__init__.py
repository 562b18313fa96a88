"""The Bybit V5 venue through pybit: the venue, its REST transport, push streams, wire format and keys."""
