"""PBX features beside the call core: forwarding, DND, voicemail with MWI, ring groups.

The call core (:mod:`voip.b2bua`) knows how to fork a call to targets and asks a
:class:`voip.routing.CallRouter` what a number means. :class:`FeatureRouter` is that
router for extensions: it wraps the dial-plan router and turns an extension's
settings (DND, forwarding, voicemail) and ring groups into forks with a next step
for busy or no answer. Protocol pieces (message-summary bodies) are sans-I/O in
:mod:`voip.sip`; this package holds their asyncio adapters.
"""
