"""Getting the reference benchmark's files onto disk: archives, checksums and info files.

``fif data download`` is built from these small parts (the CLI maps registry datasets to
:class:`fif.data.fetch.download.DatasetRequest` s, so this package does not depend on the on-disk
format's reader):

- ``manifest``: the archive links (the reference's ``download_data.csv``, shipped in the package);
- ``transfer``: one resumable HTTP transfer into a ``.part`` file (``Range`` requests);
- ``checksums``: SHA-256 of each archive, recorded on first download and checked afterwards;
- ``archives``: safe, all-or-nothing extraction of ``<FOLDER>/...`` into the data root;
- ``info_sources``: the per-split info files, from the reference repository or a local checkout;
- ``download``: the whole job for many datasets in parallel, failures collected per dataset.
"""
