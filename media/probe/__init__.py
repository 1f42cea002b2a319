"""The probe peer shared by the server's sidecar and the participant's agent.

Both ends of a probe are the same machine: stamped video and a pilot tone
out, content-reading receivers in, a ping channel both ways, and a report
per interval. ``endpoint.ProbeEndpoint`` puts the parts together.
"""
