import os

from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render

from .forms import ContactForm
from .models import Message

ITEMS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]


def home(request):
    """A template render: the page the benchmark serves too."""
    who = request.GET.get("name", "world")
    return render(request, "pages/home.html",
                  {"who": who, "items": ITEMS, "count": len(ITEMS)})


def contact(request):
    if request.method == "POST":
        form = ContactForm(request.POST)
        if form.is_valid():
            msg = Message.objects.create(**form.cleaned_data)
            return redirect("thanks", pk=msg.pk)
    else:
        form = ContactForm()
    return render(request, "pages/contact.html", {"form": form})


def thanks(request, pk):
    msg = get_object_or_404(Message, pk=pk)
    return render(request, "pages/thanks.html", {"msg": msg})


def env(request):
    meta = request.META
    return JsonResponse({
        "script_name": meta.get("SCRIPT_NAME"),
        "path_info": meta.get("PATH_INFO"),
        "path": request.path,
        "host": request.get_host(),
        "secure": request.is_secure(),
        "remote_addr": meta.get("REMOTE_ADDR"),
        "server_port": meta.get("SERVER_PORT"),
        "settings": os.environ.get("DJANGO_SETTINGS_MODULE"),
    })


def boom(request):
    raise RuntimeError("django-boom-marker")
