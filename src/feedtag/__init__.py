"""feedtag: many live camera feeds in, searchable tags and events out.

feedtag describes scenes; it never identifies people.
"""

__version__ = "0.1.0"
