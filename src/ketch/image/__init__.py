"""Image transports and the copy engine (after containers/image).

``parse_image_name("docker://busybox")`` gives a reference of one transport;
:func:`ketch.image.copy.copy_image` moves an image between any two.
"""
