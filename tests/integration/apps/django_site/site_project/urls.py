from django.contrib import admin
from django.urls import path

from pages import views

urlpatterns = [
    path("", views.home, name="home"),
    path("contact/", views.contact, name="contact"),
    path("thanks/<int:pk>/", views.thanks, name="thanks"),
    path("env/", views.env, name="env"),
    path("boom/", views.boom, name="boom"),
    path("admin/", admin.site.urls),
]
