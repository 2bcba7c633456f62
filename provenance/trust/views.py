from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from provenance.accounts.decorators import role_required
from provenance.accounts.roles import Role
from provenance.core.errors import ProvenanceError
from provenance.trust import services
from provenance.trust.forms import PublicKeyForm, TrustRootUploadForm, TufMirrorForm
from provenance.trust.models import PublicKey, TrustRoot


@role_required(Role.VIEWER, write=Role.ADMIN)
def trust_index(request: HttpRequest) -> HttpResponse:
    """Trust roots and public keys, with the forms to add one of each."""
    root_form = TrustRootUploadForm()
    mirror_form = TufMirrorForm()
    key_form = PublicKeyForm()
    if request.method == "POST" and "tuf_root" in request.FILES:
        mirror_form = TufMirrorForm(request.POST, request.FILES)
        if mirror_form.is_valid():
            try:
                services.initialize_from_tuf(name=mirror_form.cleaned_data["name"],
                                             mirror=mirror_form.cleaned_data["mirror"],
                                             root=mirror_form.cleaned_data["tuf_root"],
                                             description=mirror_form.cleaned_data["description"])
            except ProvenanceError as err:
                mirror_form.add_error("mirror", f"{err.code}: {err.message}")
            else:
                return redirect("trust")
    elif request.method == "POST" and "document" in request.FILES:
        root_form = TrustRootUploadForm(request.POST, request.FILES)
        if root_form.is_valid():
            try:
                services.upload_private_root(name=root_form.cleaned_data["name"],
                                             document=root_form.cleaned_data["document"],
                                             description=root_form.cleaned_data["description"])
            except ProvenanceError as err:
                root_form.add_error("document", f"{err.code}: {err.message}")
            else:
                return redirect("trust")
    elif request.method == "POST":
        key_form = PublicKeyForm(request.POST)
        if key_form.is_valid():
            try:
                services.add_public_key(name=key_form.cleaned_data["name"], pem=key_form.cleaned_data["pem"].encode(),
                                        description=key_form.cleaned_data["description"])
            except ProvenanceError as err:
                key_form.add_error("pem", f"{err.code}: {err.message}")
            else:
                return redirect("trust")
    status = 400 if request.method == "POST" else 200
    roots = [(row, services.signing_services(row)) for row in TrustRoot.objects.all()]
    context = {"roots": roots, "keys": PublicKey.objects.all(), "root_form": root_form, "mirror_form": mirror_form,
               "key_form": key_form}
    return render(request, "trust/index.html", context, status=status)
