// Hand-kept (see build.gradle.kts). The project name is the artifactId, so that an app's
// `includeBuild("…/clients/kotlin")` substitutes com.phonemanager:phone-manager-client.
pluginManagement {
    repositories {
        gradlePluginPortal()
        mavenCentral()
    }
}

rootProject.name = "phone-manager-client"
